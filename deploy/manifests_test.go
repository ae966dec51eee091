package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// The defaults of HOOKBRIDGE_LISTEN_ADDR, HOOKBRIDGE_ADMIN_ADDR,
// HOOKBRIDGE_SHUTDOWN_DELAY and HOOKBRIDGE_SHUTDOWN_GRACE, checked against
// the README's configuration table below.
const (
	publicPort           = 8080
	adminPort            = 9090
	defaultShutdownDelay = 5 * time.Second
	defaultShutdownGrace = 20 * time.Second
	imageRepo            = "ghcr.io/hookbridge/hookbridge:"
)

// manifests holds every object of deploy/kubernetes, decoded strictly.
type manifests struct {
	deployments map[string]*appsv1.Deployment // by file
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	secrets     []*corev1.Secret
}

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	m := &manifests{deployments: map[string]*appsv1.Deployment{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocs(b) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s #%d: %v", f, i, err)
			}
			var obj any
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				m.deployments[filepath.Base(f)], obj = d, d
			case "v1 Service":
				s := &corev1.Service{}
				m.services, obj = append(m.services, s), s
			case "policy/v1 PodDisruptionBudget":
				p := &policyv1.PodDisruptionBudget{}
				m.pdbs, obj = append(m.pdbs, p), p
			case "v1 Secret":
				s := &corev1.Secret{}
				m.secrets, obj = append(m.secrets, s), s
			default:
				t.Fatalf("%s #%d: unexpected %s %s (add it to this test)", f, i, tm.APIVersion, tm.Kind)
			}
			// Strict: an unknown or misspelt field is an error, as with
			// kubectl apply --validate=strict.
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s #%d (%s): %v", f, i, tm.Kind, err)
			}
		}
	}
	return m
}

func splitDocs(b []byte) [][]byte {
	var out [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(d, "")) != "" {
			out = append(out, []byte(d))
		}
	}
	return out
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := load(t)
	if len(m.deployments) != 2 || len(m.services) != 1 || len(m.pdbs) != 1 || len(m.secrets) != 1 {
		t.Fatalf("got %d deployments, %d services, %d PDBs, %d secrets; want 2, 1, 1, 1",
			len(m.deployments), len(m.services), len(m.pdbs), len(m.secrets))
	}
	for _, want := range []string{"deployment.yaml", "sidecar-example.yaml"} {
		if m.deployments[want] == nil {
			t.Errorf("no Deployment in %s", want)
		}
	}
}

func TestREADMEDefaultsMatch(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{
		"| `HOOKBRIDGE_LISTEN_ADDR` | `:8080` |",
		"| `HOOKBRIDGE_ADMIN_ADDR` | `:9090` |",
		"| `HOOKBRIDGE_SHUTDOWN_DELAY` | `5s` |",
		"| `HOOKBRIDGE_SHUTDOWN_GRACE` | `20s` |",
	} {
		if !bytes.Contains(b, []byte(row)) {
			t.Errorf("README configuration table lacks %q: update this test and the manifests together", row)
		}
	}
}

func TestDeployments(t *testing.T) {
	m := load(t)
	secretNames := map[string]bool{}
	for _, s := range m.secrets {
		secretNames[s.Name] = true
	}
	for file, d := range m.deployments {
		t.Run(file, func(t *testing.T) {
			checkDeployment(t, d, secretNames)
		})
	}
	if d := m.deployments["deployment.yaml"]; d != nil {
		if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
			t.Errorf("deployment.yaml: want at least 2 replicas")
		}
		if d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable == nil ||
			d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
			t.Errorf("deployment.yaml: rolling updates should keep every replica (maxUnavailable: 0)")
		}
	}
}

func checkDeployment(t *testing.T, d *appsv1.Deployment, secretNames map[string]bool) {
	pod := d.Spec.Template.Spec
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("selector %v does not match the template labels %v", d.Spec.Selector, d.Spec.Template.Labels)
	}
	var c *corev1.Container
	for i := range pod.Containers {
		if pod.Containers[i].Name == "hookbridge" {
			c = &pod.Containers[i]
		}
		if img := pod.Containers[i].Image; strings.HasSuffix(img, ":latest") || !strings.Contains(img, ":") {
			t.Errorf("container %s: image %q must be pinned", pod.Containers[i].Name, img)
		}
	}
	if c == nil {
		t.Fatal("no container named hookbridge")
	}
	if !strings.HasPrefix(c.Image, imageRepo) {
		t.Errorf("image %q, want %s<tag>", c.Image, imageRepo)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken should be false: hookbridge never calls the API server")
	}

	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		env[e.Name] = e
	}
	for _, name := range []string{"HOOKBRIDGE_LISTEN_ADDR", "HOOKBRIDGE_ADMIN_ADDR", "HOOKBRIDGE_SECRETS", "OPENAI_WEBHOOK_SECRET"} {
		if _, ok := env[name]; ok {
			t.Errorf("%s is set; the manifests rely on the default ports and on the secrets file", name)
		}
	}
	if env["HOOKBRIDGE_BROKER"].Value != "nats" || env["HOOKBRIDGE_NATS_URL"].Value == "" {
		t.Errorf("want HOOKBRIDGE_BROKER=nats and HOOKBRIDGE_NATS_URL")
	}
	if dd := env["HOOKBRIDGE_DEDUP"].Value; dd == "memory" || dd == "off" {
		t.Errorf("HOOKBRIDGE_DEDUP=%s: replicas must share the dedup store", dd)
	}

	// Ports: the README defaults, named for the probes and the Service.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != publicPort || ports["admin"] != adminPort {
		t.Errorf("container ports %v, want http=%d admin=%d", ports, publicPort, adminPort)
	}
	probe := func(kind string, p *corev1.Probe, path string) *corev1.Probe {
		t.Helper()
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: want httpGet %s on the admin port", kind, path)
			return nil
		}
		port := p.HTTPGet.Port
		if port.Type == intstr.String {
			port = intstr.FromInt32(ports[port.StrVal])
		}
		if p.HTTPGet.Path != path || port.IntValue() != adminPort {
			t.Errorf("%s probe: %s on %v, want %s on %d", kind, p.HTTPGet.Path, p.HTTPGet.Port.String(), path, adminPort)
		}
		return p
	}
	ready := probe("readiness", c.ReadinessProbe, "/readyz")
	live := probe("liveness", c.LivenessProbe, "/healthz")
	if ready != nil && live != nil &&
		live.FailureThreshold*max(live.PeriodSeconds, 1) <= ready.FailureThreshold*max(ready.PeriodSeconds, 1) {
		t.Errorf("liveness must be more patient than readiness (a broker outage must not restart pods)")
	}
	if c.StartupProbe != nil {
		probe("startup", c.StartupProbe, "/healthz")
	}

	// Shutdown: the kubelet must not SIGKILL before delay + grace.
	dur := func(name string, def time.Duration) time.Duration {
		v, ok := env[name]
		if !ok {
			return def
		}
		d, err := time.ParseDuration(v.Value)
		if err != nil {
			t.Errorf("%s=%q: %v", name, v.Value, err)
		}
		return d
	}
	budget := dur("HOOKBRIDGE_SHUTDOWN_DELAY", defaultShutdownDelay) + dur("HOOKBRIDGE_SHUTDOWN_GRACE", defaultShutdownGrace)
	grace := int64(30) // the Kubernetes default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	if time.Duration(grace)*time.Second <= budget {
		t.Errorf("terminationGracePeriodSeconds %d must exceed shutdown delay + grace (%s)", grace, budget)
	}

	// Security context: container settings, or the pod's where they are inherited.
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if sc == nil {
		t.Fatal("hookbridge container has no securityContext")
	}
	nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
	if !nonRoot {
		t.Errorf("runAsNonRoot must be true")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("readOnlyRootFilesystem must be true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("allowPrivilegeEscalation must be false")
	}
	if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities must drop ALL and add none")
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile must be RuntimeDefault")
	}

	// Resources, and GOMEMLIMIT from the memory limit through the downward API.
	r := c.Resources
	if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
		t.Errorf("want cpu and memory requests and a memory limit, got %v", r)
	}
	if r.Limits.Memory().Cmp(*r.Requests.Memory()) < 0 {
		t.Errorf("memory limit below the request")
	}
	gml, ok := env["GOMEMLIMIT"]
	switch {
	case !ok || gml.ValueFrom == nil || gml.ValueFrom.ResourceFieldRef == nil:
		t.Errorf("GOMEMLIMIT must come from resourceFieldRef limits.memory")
	default:
		ref := gml.ValueFrom.ResourceFieldRef
		if ref.Resource != "limits.memory" || ref.ContainerName != "hookbridge" || ref.Divisor.Cmp(resource.MustParse("1")) != 0 {
			t.Errorf("GOMEMLIMIT: %+v, want limits.memory of hookbridge in bytes (divisor 1)", ref)
		}
	}

	// The secrets file is a read-only mount of a Secret volume, without
	// subPath (subPath mounts never see updates, so rotation would need a restart).
	file := env["HOOKBRIDGE_SECRETS_FILE"].Value
	if file == "" {
		t.Fatalf("HOOKBRIDGE_SECRETS_FILE is not set")
	}
	var mount *corev1.VolumeMount
	for i, vm := range c.VolumeMounts {
		if filepath.Dir(file) == vm.MountPath {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil {
		t.Fatalf("no volume mounted at %s", filepath.Dir(file))
	}
	if !mount.ReadOnly || mount.SubPath != "" {
		t.Errorf("secrets mount: readOnly %v, subPath %q; want read-only and no subPath", mount.ReadOnly, mount.SubPath)
	}
	found := false
	for _, v := range pod.Volumes {
		if v.Name == mount.Name {
			found = true
			if v.Secret == nil || !secretNames[v.Secret.SecretName] {
				t.Errorf("volume %s is not the example Secret", v.Name)
			}
			// A mode without world-read needs fsGroup, which owns the volume
			// and is a supplementary group of every container.
			if v.Secret != nil && v.Secret.DefaultMode != nil && *v.Secret.DefaultMode&0o004 == 0 && psc.FSGroup == nil {
				t.Errorf("secret mode %o is not world-readable and no fsGroup gives the non-root user access", *v.Secret.DefaultMode)
			}
		}
	}
	if !found {
		t.Errorf("volume %s not declared", mount.Name)
	}
}

func TestServicePDBSecret(t *testing.T) {
	m := load(t)
	d := m.deployments["deployment.yaml"]
	if d == nil {
		t.Fatal("no deployment.yaml")
	}
	tmpl := labels.Set(d.Spec.Template.Labels)
	for _, s := range m.services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(tmpl) || len(s.Spec.Selector) == 0 {
			t.Errorf("service %s selector %v does not select the deployment", s.Name, s.Spec.Selector)
		}
		ports := map[string]corev1.ServicePort{}
		for _, p := range s.Spec.Ports {
			ports[p.Name] = p
		}
		for name, want := range map[string]int32{"http": publicPort, "admin": adminPort} {
			p, ok := ports[name]
			if !ok || p.Port != want || p.TargetPort.String() != name {
				t.Errorf("service port %s: %+v, want port %d targeting the named container port", name, p, want)
			}
		}
	}
	for _, p := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || !sel.Matches(tmpl) {
			t.Errorf("PDB %s does not select the deployment", p.Name)
		}
		if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() < 1 || p.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) {
			t.Errorf("PDB minAvailable must be ≥ 1 and below the replica count (or drains block)")
		}
	}
	for _, s := range m.secrets {
		for k, v := range s.StringData {
			if !strings.Contains(v, "REPLACE") {
				t.Errorf("secret %s key %s holds something other than a placeholder", s.Name, k)
			}
		}
		if len(s.Data) > 0 {
			t.Errorf("secret %s: use stringData with a placeholder, never data", s.Name)
		}
	}
}

// alertRules is the Prometheus rule file format (the fields used here).
type alertRules struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var r alertRules
	if err := yaml.UnmarshalStrict(b, &r); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	metricName := regexp.MustCompile(`hookbridge_[a-z_]+`)
	seen := map[string]bool{}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			seen[rule.Alert] = true
			if rule.Expr == "" || rule.Labels["severity"] == "" || rule.Annotations["summary"] == "" {
				t.Errorf("%s: want expr, labels.severity and annotations.summary", rule.Alert)
			}
			if rule.For != "" {
				if _, err := time.ParseDuration(rule.For); err != nil {
					t.Errorf("%s: for %q: %v", rule.Alert, rule.For, err)
				}
			}
			if strings.Count(rule.Expr, "(") != strings.Count(rule.Expr, ")") {
				t.Errorf("%s: unbalanced parentheses in %q", rule.Alert, rule.Expr)
			}
			for _, name := range metricName.FindAllString(rule.Expr, -1) {
				base := strings.TrimSuffix(name, "_bucket")
				if !bytes.Contains(readme, []byte("`"+base+"`")) {
					t.Errorf("%s: %s is not a metric listed in the README", rule.Alert, name)
				}
			}
		}
	}
	for _, want := range []string{"HookbridgeSignatureFailureSpike", "HookbridgeBrokerDown", "HookbridgeUnavailableRatio", "HookbridgePublishLatencyHigh"} {
		if !seen[want] {
			t.Errorf("alert %s missing", want)
		}
	}
}
