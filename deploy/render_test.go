package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// root is where deploy/kubernetes lives in the in-memory file system that
// the kustomizations are built from.
const root = "/kubernetes"

// exampleSecret is what the tests put in examples/secret/secrets, the file a
// user creates (git-ignored). It is a test value only.
const exampleSecret = "whsec_MfKQ9r8GKYqrTCtxzuKx6ySE4xD2FVy64EVjmpN6v2A="

// rendered is the output of one kustomization, every object decoded strictly
// into its API type (an unknown or misspelt field is an error, as with
// kubectl apply --validate=strict).
type rendered struct {
	dir         string
	ids         []string // Kind/name, sorted
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	netpols     []*networkingv1.NetworkPolicy
	secrets     []*corev1.Secret
	podMonitors []*monitoringv1.PodMonitor
	promRules   []*monitoringv1.PrometheusRule
}

// sourceFS copies deploy/kubernetes into memory, plus extra files (path
// relative to deploy/kubernetes → content), so that a test can add what a
// user would create without touching the checkout.
func sourceFS(t *testing.T, extra map[string]string) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir("kubernetes", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join(root, strings.TrimPrefix(p, "kubernetes")), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, content := range extra {
		if err := mem.WriteFile(filepath.Join(root, p), []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	return mem
}

// build runs `kustomize build` (what `kubectl apply -k` applies) on dir,
// relative to deploy/kubernetes.
func build(fsys filesys.FileSystem, dir string) (*rendered, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(fsys, filepath.Join(root, dir))
	if err != nil {
		return nil, err
	}
	r := &rendered{dir: dir}
	for _, res := range m.Resources() {
		b, err := res.AsYAML()
		if err != nil {
			return nil, err
		}
		id := res.GetKind() + "/" + res.GetName()
		r.ids = append(r.ids, id)
		var obj any
		switch res.GetApiVersion() + " " + res.GetKind() {
		case "apps/v1 Deployment":
			d := &appsv1.Deployment{}
			r.deployments, obj = append(r.deployments, d), d
		case "v1 Service":
			s := &corev1.Service{}
			r.services, obj = append(r.services, s), s
		case "policy/v1 PodDisruptionBudget":
			p := &policyv1.PodDisruptionBudget{}
			r.pdbs, obj = append(r.pdbs, p), p
		case "networking.k8s.io/v1 NetworkPolicy":
			n := &networkingv1.NetworkPolicy{}
			r.netpols, obj = append(r.netpols, n), n
		case "v1 Secret":
			s := &corev1.Secret{}
			r.secrets, obj = append(r.secrets, s), s
		case "monitoring.coreos.com/v1 PodMonitor":
			p := &monitoringv1.PodMonitor{}
			r.podMonitors, obj = append(r.podMonitors, p), p
		case "monitoring.coreos.com/v1 PrometheusRule":
			p := &monitoringv1.PrometheusRule{}
			r.promRules, obj = append(r.promRules, p), p
		default:
			return nil, &unexpectedKind{dir, res.GetApiVersion(), id}
		}
		if err := yaml.UnmarshalStrict(b, obj); err != nil {
			return nil, &decodeError{dir, id, err}
		}
	}
	sort.Strings(r.ids)
	return r, nil
}

type unexpectedKind struct{ dir, apiVersion, id string }

func (e *unexpectedKind) Error() string {
	return e.dir + ": unexpected " + e.apiVersion + " " + e.id + " (add it to this test)"
}

type decodeError struct {
	dir, id string
	err     error
}

func (e *decodeError) Error() string { return e.dir + ": " + e.id + ": " + e.err.Error() }

// kustomizations lists every directory of deploy/kubernetes holding a
// kustomization.yaml, relative to it, and whether it is a Component.
func kustomizations(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.WalkDir("kubernetes", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "kustomization.yaml" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var k struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(b, &k); err != nil {
			return err
		}
		rel, _ := filepath.Rel("kubernetes", filepath.Dir(p))
		out[rel] = k.Kind == "Component"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// buildAll builds every kustomization that can be applied on its own: the
// base and each example, with the secrets file a user would create.
func buildAll(t *testing.T) map[string]*rendered {
	t.Helper()
	fsys := sourceFS(t, map[string]string{"examples/secret/secrets": exampleSecret + "\n"})
	out := map[string]*rendered{}
	for dir, component := range kustomizations(t) {
		if component {
			continue
		}
		r, err := build(fsys, dir)
		if err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		out[dir] = r
	}
	for _, want := range []string{".", "examples/secret", "examples/sidecar", "examples/nats-cluster", "examples/kafka", "examples/monitoring", "examples/routes"} {
		if out[want] == nil {
			t.Errorf("no kustomization in deploy/kubernetes/%s", want)
		}
	}
	return out
}
