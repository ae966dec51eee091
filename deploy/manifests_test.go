package deploy

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
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
	secretName           = "hookbridge-secrets" // what the README and examples/secret create
)

// TestBaseCreatesNoExampleOrSecret is `kubectl apply -k deploy/kubernetes`:
// the Deployment, its Service, the PDB and the NetworkPolicy, and nothing
// else (no placeholder Secret over the real one, no example application).
func TestBaseCreatesNoExampleOrSecret(t *testing.T) {
	base := buildAll(t)["."]
	want := []string{"Deployment/hookbridge", "NetworkPolicy/hookbridge", "PodDisruptionBudget/hookbridge", "Service/hookbridge"}
	if !slices.Equal(base.ids, want) {
		t.Errorf("kubectl apply -k deploy/kubernetes creates %v, want %v", base.ids, want)
	}
}

// TestEveryManifestIsBuilt: each YAML file under deploy/kubernetes is a
// resource of some kustomization, so every one is built and checked here.
func TestEveryManifestIsBuilt(t *testing.T) {
	used := map[string]bool{}
	for dir := range kustomizations(t) {
		b, err := os.ReadFile(filepath.Join("kubernetes", dir, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var k struct {
			Resources []string `json:"resources"`
		}
		if err := yaml.Unmarshal(b, &k); err != nil {
			t.Fatal(err)
		}
		for _, r := range k.Resources {
			used[filepath.Join("kubernetes", dir, r)] = true
		}
	}
	err := filepath.WalkDir("kubernetes", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".yaml") && d.Name() != "kustomization.yaml" && !used[p] {
			t.Errorf("%s is in no kustomization's resources", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
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
	for dir, r := range buildAll(t) {
		for _, d := range r.deployments {
			t.Run(dir+"/"+d.Name, func(t *testing.T) { checkDeployment(t, d) })
		}
	}
	d := buildAll(t)["."].deployments[0]
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("deployment.yaml: want at least 2 replicas")
	}
	if d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable == nil ||
		d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Errorf("deployment.yaml: rolling updates should keep every replica (maxUnavailable: 0)")
	}
}

// bridgeContainer finds hookbridge in the pod: a container, or a native
// sidecar (an init container with restartPolicy Always).
func bridgeContainer(pod *corev1.PodSpec) (c *corev1.Container, sidecar bool) {
	for i := range pod.Containers {
		if pod.Containers[i].Name == "hookbridge" {
			return &pod.Containers[i], false
		}
	}
	for i := range pod.InitContainers {
		ic := &pod.InitContainers[i]
		if ic.Name == "hookbridge" && ic.RestartPolicy != nil && *ic.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			return ic, true
		}
	}
	return nil, false
}

func envMap(t *testing.T, c *corev1.Container) map[string]corev1.EnvVar {
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		env[e.Name] = e
	}
	return env
}

func checkDeployment(t *testing.T, d *appsv1.Deployment) {
	pod := d.Spec.Template.Spec
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("selector %v does not match the template labels %v", d.Spec.Selector, d.Spec.Template.Labels)
	}
	for _, cs := range [][]corev1.Container{pod.InitContainers, pod.Containers} {
		for _, c := range cs {
			if img := c.Image; strings.HasSuffix(img, ":latest") || !strings.Contains(img, ":") {
				t.Errorf("container %s: image %q must be pinned", c.Name, img)
			}
		}
	}
	c, sidecar := bridgeContainer(&pod)
	if c == nil {
		t.Fatal("no container (or native sidecar) named hookbridge")
	}
	if !strings.HasPrefix(c.Image, imageRepo) {
		t.Errorf("image %q, want %s<tag>", c.Image, imageRepo)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken should be false: hookbridge never calls the API server")
	}

	env := envMap(t, c)
	for _, name := range []string{"HOOKBRIDGE_LISTEN_ADDR", "HOOKBRIDGE_ADMIN_ADDR", "HOOKBRIDGE_SECRETS", "OPENAI_WEBHOOK_SECRET"} {
		if _, ok := env[name]; ok {
			t.Errorf("%s is set; the manifests rely on the default ports and on the secrets file", name)
		}
	}
	switch b := env["HOOKBRIDGE_BROKER"].Value; b {
	case "nats":
		if env["HOOKBRIDGE_NATS_URL"].Value == "" {
			t.Errorf("HOOKBRIDGE_BROKER=nats without HOOKBRIDGE_NATS_URL")
		}
	case "kafka":
		if env["HOOKBRIDGE_KAFKA_BROKERS"].Value == "" {
			t.Errorf("HOOKBRIDGE_BROKER=kafka without HOOKBRIDGE_KAFKA_BROKERS")
		}
		if _, ok := env["HOOKBRIDGE_NATS_URL"]; ok {
			t.Errorf("HOOKBRIDGE_NATS_URL is left over with HOOKBRIDGE_BROKER=kafka")
		}
	default:
		t.Errorf("HOOKBRIDGE_BROKER=%q, want nats or kafka (the embedded broker is for one process)", b)
	}
	dedup := env["HOOKBRIDGE_DEDUP"].Value
	if dedup == "memory" || dedup == "off" || (dedup == "" && env["HOOKBRIDGE_BROKER"].Value == "kafka") {
		t.Errorf("HOOKBRIDGE_DEDUP=%q with %s: replicas must share the dedup store", dedup, env["HOOKBRIDGE_BROKER"].Value)
	}
	if dedup == "redis" && env["HOOKBRIDGE_REDIS_URL"].Value == "" && env["HOOKBRIDGE_REDIS_URL"].ValueFrom == nil {
		t.Errorf("HOOKBRIDGE_DEDUP=redis without HOOKBRIDGE_REDIS_URL")
	}

	// Ports: the README defaults; the admin port named for the probes and
	// the monitors.
	ports := map[string]int32{}
	public := false
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
		public = public || p.ContainerPort == publicPort
	}
	if !public || ports["admin"] != adminPort {
		t.Errorf("container ports %v, want %d and admin=%d", ports, publicPort, adminPort)
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
	live := probe("liveness", c.LivenessProbe, "/healthz")
	if c.StartupProbe != nil || sidecar {
		probe("startup", c.StartupProbe, "/healthz")
	}
	if sidecar {
		// A sidecar's readiness is the pod's: /readyz (the broker) would take
		// the application out of its Service on a broker blip.
		if c.ReadinessProbe != nil {
			t.Errorf("the hookbridge sidecar has a readinessProbe; the application's readiness must not follow the broker")
		}
		for _, app := range pod.Containers {
			for _, p := range []*corev1.Probe{app.ReadinessProbe, app.LivenessProbe, app.StartupProbe} {
				if p != nil && p.HTTPGet != nil && (p.HTTPGet.Port.String() == "admin" || p.HTTPGet.Port.IntValue() == adminPort) {
					t.Errorf("container %s probes hookbridge's admin port", app.Name)
				}
			}
		}
	} else {
		ready := probe("readiness", c.ReadinessProbe, "/readyz")
		if ready != nil && live != nil &&
			live.FailureThreshold*max(live.PeriodSeconds, 1) <= ready.FailureThreshold*max(ready.PeriodSeconds, 1) {
			t.Errorf("liveness must be more patient than readiness (a broker outage must not restart pods)")
		}
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

	// Each secrets file (the single endpoint's, or one per route) is a
	// read-only mount of a Secret volume of its own.
	files := secretFiles(env)
	if len(files) == 0 {
		t.Fatalf("HOOKBRIDGE_SECRETS_FILE is not set, and no HOOKBRIDGE_ROUTES_<n>_SECRETS_FILE")
	}
	if _, single := files["HOOKBRIDGE_SECRETS_FILE"]; single && len(files) > 1 {
		t.Errorf("HOOKBRIDGE_SECRETS_FILE and route secrets files together: start-up refuses both")
	}
	seen := map[string]string{}
	for variable, file := range files {
		name := checkSecretMount(t, c, &pod, psc, variable, file)
		if other, dup := seen[name]; dup && name != "" {
			t.Errorf("%s and %s share the Secret %s: each route has its own", variable, other, name)
		}
		seen[name] = variable
	}
}

// secretFiles are the secrets-file variables of a container: the single
// endpoint's and every route's.
func secretFiles(env map[string]corev1.EnvVar) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		if k == "HOOKBRIDGE_SECRETS_FILE" || strings.HasPrefix(k, "HOOKBRIDGE_ROUTES_") && strings.HasSuffix(k, "_SECRETS_FILE") {
			out[k] = v.Value
		}
	}
	return out
}

// checkSecretMount checks that file is in a read-only mount of a Secret
// volume, without subPath (subPath mounts never see updates, so rotation
// would need a restart), and returns the Secret's name. The single
// endpoint's Secret is the one the README and examples/secret create; a
// route's is named after it.
func checkSecretMount(t *testing.T, c *corev1.Container, pod *corev1.PodSpec, psc *corev1.PodSecurityContext, variable, file string) string {
	t.Helper()
	var mount *corev1.VolumeMount
	for i, vm := range c.VolumeMounts {
		if filepath.Dir(file) == vm.MountPath {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil {
		t.Fatalf("%s: no volume mounted at %s", variable, filepath.Dir(file))
	}
	if !mount.ReadOnly || mount.SubPath != "" {
		t.Errorf("%s mount: readOnly %v, subPath %q; want read-only and no subPath", variable, mount.ReadOnly, mount.SubPath)
	}
	for _, v := range pod.Volumes {
		if v.Name != mount.Name {
			continue
		}
		if v.Secret == nil || v.Secret.SecretName != secretName && (variable == "HOOKBRIDGE_SECRETS_FILE" || !strings.HasPrefix(v.Secret.SecretName, secretName+"-")) {
			t.Errorf("%s: volume %s is not the Secret %s (or, for a route, %s-<route>)", variable, v.Name, secretName, secretName)
			return ""
		}
		// A mode without world-read needs fsGroup, which owns the volume
		// and is a supplementary group of every container.
		if v.Secret.DefaultMode != nil && *v.Secret.DefaultMode&0o004 == 0 && psc.FSGroup == nil {
			t.Errorf("secret mode %o is not world-readable and no fsGroup gives the non-root user access", *v.Secret.DefaultMode)
		}
		return v.Secret.SecretName
	}
	t.Errorf("volume %s not declared", mount.Name)
	return ""
}

// TestServicesKeepAdminPrivate: the public Service carries the webhook port
// only, and no Service anywhere exposes the webhook and admin ports together
// (the admin port serves metrics and the broker's readiness details).
func TestServicesKeepAdminPrivate(t *testing.T) {
	all := buildAll(t)
	for dir, r := range all {
		for _, s := range r.services {
			webhook, admin := false, false
			for _, p := range s.Spec.Ports {
				tp := p.TargetPort.String()
				webhook = webhook || tp == "http" || tp == "webhooks" || tp == strconv.Itoa(publicPort)
				admin = admin || tp == "admin" || tp == strconv.Itoa(adminPort) || p.Port == adminPort
			}
			if webhook && admin {
				t.Errorf("%s: Service %s exposes the webhook and the admin port together", dir, s.Name)
			}
		}
	}
	base := all["."]
	tmpl := labels.Set(base.deployments[0].Spec.Template.Labels)
	if len(base.services) != 1 {
		t.Fatalf("base: %d Services, want 1", len(base.services))
	}
	s := base.services[0]
	if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(tmpl) {
		t.Errorf("service %s selector %v does not select the deployment", s.Name, s.Spec.Selector)
	}
	if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != publicPort || s.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("service %s ports %+v, want only %d targeting the container port http", s.Name, s.Spec.Ports, publicPort)
	}
	for _, p := range base.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || !sel.Matches(tmpl) {
			t.Errorf("PDB %s does not select the deployment", p.Name)
		}
		if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() >= int(*base.deployments[0].Spec.Replicas) {
			t.Errorf("PDB %s minAvailable %v must be below the replica count, or nodes never drain", p.Name, p.Spec.MinAvailable)
		}
	}
}

// TestNetworkPolicy, for the base and every overlay of it: webhooks from
// anywhere, the admin port only from a selected namespace, and egress to
// DNS and to exactly the ports of the broker and Redis the Deployment is
// configured with.
func TestNetworkPolicy(t *testing.T) {
	n := 0
	for dir, r := range buildAll(t) {
		if len(r.netpols) == 0 {
			continue
		}
		n++
		t.Run(dir, func(t *testing.T) {
			if len(r.netpols) != 1 || len(r.deployments) != 1 {
				t.Fatalf("%d NetworkPolicies for %d Deployments, want one each", len(r.netpols), len(r.deployments))
			}
			checkNetworkPolicy(t, r.netpols[0], r.deployments[0])
		})
	}
	if n < 4 {
		t.Errorf("NetworkPolicy checked in %d kustomizations; want the base and its overlays", n)
	}
}

func checkNetworkPolicy(t *testing.T, np *networkingv1.NetworkPolicy, d *appsv1.Deployment) {
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || np.Spec.PodSelector.Size() == 0 || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("podSelector %v does not select hookbridge's pods (and only them)", np.Spec.PodSelector)
	}
	types := map[networkingv1.PolicyType]bool{}
	for _, pt := range np.Spec.PolicyTypes {
		types[pt] = true
	}
	if !types[networkingv1.PolicyTypeIngress] || !types[networkingv1.PolicyTypeEgress] {
		t.Errorf("policyTypes %v, want Ingress and Egress", np.Spec.PolicyTypes)
	}

	webhookOpen, adminReachable := false, false
	for i, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("ingress rule %d allows every port", i)
		}
		hasWebhook, hasAdmin := false, false
		for _, p := range rule.Ports {
			if p.Port == nil {
				t.Errorf("ingress rule %d: a port entry without a port allows every port", i)
				continue
			}
			hasWebhook = hasWebhook || p.Port.String() == "http" || p.Port.IntValue() == publicPort
			hasAdmin = hasAdmin || p.Port.String() == "admin" || p.Port.IntValue() == adminPort
		}
		if hasWebhook && hasAdmin {
			t.Errorf("ingress rule %d admits the webhook and admin ports together", i)
		}
		if hasWebhook {
			webhookOpen = true
		}
		if hasAdmin {
			adminReachable = true
			if len(rule.From) == 0 {
				t.Errorf("ingress rule %d admits the admin port from anywhere", i)
			}
			for _, peer := range rule.From {
				if peer.IPBlock != nil || peer.NamespaceSelector == nil || peer.NamespaceSelector.Size() == 0 {
					t.Errorf("ingress rule %d: admin port peer %+v, want a namespaceSelector naming the monitoring namespace", i, peer)
				}
			}
		}
	}
	if !webhookOpen {
		t.Errorf("no ingress rule admits webhooks on the http port")
	}
	if !adminReachable {
		t.Errorf("no ingress rule admits Prometheus to the admin port")
	}

	c, _ := bridgeContainer(&d.Spec.Template.Spec)
	want := egressTargets(t, envMap(t, c))
	var got []string
	for i, rule := range np.Spec.Egress {
		if len(rule.To) == 0 || len(rule.Ports) == 0 {
			t.Errorf("egress rule %d: to %v ports %v; every rule needs both (no egress to anywhere)", i, rule.To, rule.Ports)
		}
		for _, p := range rule.Ports {
			if p.Port == nil || p.Port.Type != intstr.Int {
				t.Errorf("egress rule %d: port %v, want a number", i, p.Port)
				continue
			}
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			got = append(got, fmt.Sprintf("%s/%d", proto, p.Port.IntValue()))
		}
	}
	sort.Strings(got)
	got = slices.Compact(got)
	if !slices.Equal(got, want) {
		t.Errorf("egress ports %v, want %v (DNS, and the broker and Redis of the Deployment's environment)", got, want)
	}
}

// egressTargets lists, as protocol/port, what the bridge configured by env
// connects to: DNS, the NATS servers or Kafka brokers, and Redis.
func egressTargets(t *testing.T, env map[string]corev1.EnvVar) []string {
	out := []string{"TCP/53", "UDP/53"}
	urlPort := func(raw, def string) {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			t.Errorf("cannot parse %q as a URL", raw)
			return
		}
		p := u.Port()
		if p == "" {
			p = def
		}
		out = append(out, "TCP/"+p)
	}
	switch env["HOOKBRIDGE_BROKER"].Value {
	case "nats":
		for _, u := range strings.Split(env["HOOKBRIDGE_NATS_URL"].Value, ",") {
			urlPort(strings.TrimSpace(u), "4222")
		}
	case "kafka":
		for _, b := range strings.Split(env["HOOKBRIDGE_KAFKA_BROKERS"].Value, ",") {
			_, p, err := net.SplitHostPort(strings.TrimSpace(b))
			if err != nil {
				t.Errorf("HOOKBRIDGE_KAFKA_BROKERS %q: %v", b, err)
			}
			out = append(out, "TCP/"+p)
		}
	}
	if env["HOOKBRIDGE_DEDUP"].Value == "redis" {
		urlPort(env["HOOKBRIDGE_REDIS_URL"].Value, "6379")
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// TestOverlays: what each example overlay changes, and that the base keeps
// the stream at one replica (what a single NATS server can hold).
func TestOverlays(t *testing.T) {
	all := buildAll(t)
	env := func(dir string) map[string]corev1.EnvVar {
		r := all[dir]
		if r == nil || len(r.deployments) != 1 {
			t.Fatalf("%s: want one Deployment", dir)
		}
		c, _ := bridgeContainer(&r.deployments[0].Spec.Template.Spec)
		return envMap(t, c)
	}
	if v, ok := env(".")["HOOKBRIDGE_NATS_REPLICAS"]; ok && v.Value != "1" {
		t.Errorf("base: HOOKBRIDGE_NATS_REPLICAS=%s; a single NATS server cannot hold more than 1", v.Value)
	}
	if v := env("examples/nats-cluster")["HOOKBRIDGE_NATS_REPLICAS"].Value; v != "3" {
		t.Errorf("examples/nats-cluster: HOOKBRIDGE_NATS_REPLICAS=%q, want 3", v)
	}
	k := env("examples/kafka")
	if k["HOOKBRIDGE_BROKER"].Value != "kafka" || k["HOOKBRIDGE_DEDUP"].Value != "redis" {
		t.Errorf("examples/kafka: broker %q dedup %q, want kafka and redis", k["HOOKBRIDGE_BROKER"].Value, k["HOOKBRIDGE_DEDUP"].Value)
	}
	r := env("examples/routes")
	if _, ok := r["HOOKBRIDGE_SECRETS_FILE"]; ok {
		t.Errorf("examples/routes keeps HOOKBRIDGE_SECRETS_FILE beside its routes")
	}
	for n, want := range []string{"prod", "staging"} {
		pre := fmt.Sprintf("HOOKBRIDGE_ROUTES_%d_", n)
		if r[pre+"NAME"].Value != want || !strings.HasPrefix(r[pre+"PATH"].Value, "/") || r[pre+"PREFIX"].Value != "openai."+want {
			t.Errorf("examples/routes: route %d is %q on %q with prefix %q", n, r[pre+"NAME"].Value, r[pre+"PATH"].Value, r[pre+"PREFIX"].Value)
		}
	}
	for _, dir := range []string{"examples/nats-cluster", "examples/kafka", "examples/monitoring", "examples/routes"} {
		base := all["."].ids
		for _, id := range base {
			if !slices.Contains(all[dir].ids, id) {
				t.Errorf("%s lacks the base's %s", dir, id)
			}
		}
	}
}

// TestSecretExample: examples/secret makes the Secret the Deployment mounts
// from the user's file, and without that file it fails rather than apply a
// placeholder.
func TestSecretExample(t *testing.T) {
	r := buildAll(t)["examples/secret"]
	if !slices.Equal(r.ids, []string{"Secret/" + secretName}) {
		t.Fatalf("examples/secret creates %v, want only Secret/%s", r.ids, secretName)
	}
	s := r.secrets[0]
	content := string(s.Data["secrets"]) + s.StringData["secrets"]
	if content != exampleSecret+"\n" {
		t.Errorf("Secret key secrets = %q, want the file's content", content)
	}
	if _, err := build(sourceFS(t, nil), "examples/secret"); err == nil {
		t.Errorf("examples/secret builds without the user's secrets file")
	}
	ignore, err := os.ReadFile("kubernetes/examples/secret/.gitignore")
	if err != nil || !regexp.MustCompile(`(?m)^/?secrets$`).Match(ignore) {
		t.Errorf("examples/secret/.gitignore must ignore the secrets file (%v)", err)
	}
}

// TestSidecarExample: the application with hookbridge as its native
// sidecar (the sidecar checks themselves are in checkDeployment).
func TestSidecarExample(t *testing.T) {
	r := buildAll(t)["examples/sidecar"]
	if len(r.deployments) != 1 || len(r.secrets) != 0 {
		t.Fatalf("examples/sidecar creates %v, want one Deployment and no Secret", r.ids)
	}
	pod := r.deployments[0].Spec.Template.Spec
	if _, sidecar := bridgeContainer(&pod); !sidecar {
		t.Errorf("hookbridge is not a native sidecar (init container with restartPolicy Always)")
	}
	if len(pod.Containers) == 0 {
		t.Errorf("no application container")
	}
}

// TestMonitoringComponent: the PodMonitor scrapes the admin port of
// hookbridge's pods, and the PrometheusRule carries exactly the tested
// rules of prometheus/alerts.yaml.
func TestMonitoringComponent(t *testing.T) {
	r := buildAll(t)["examples/monitoring"]
	if len(r.podMonitors) != 1 || len(r.promRules) != 1 || len(r.deployments) != 1 {
		t.Fatalf("examples/monitoring creates %v, want the base, a PodMonitor and a PrometheusRule", r.ids)
	}
	pm, d := r.podMonitors[0], r.deployments[0]
	sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
	if err != nil || pm.Spec.Selector.Size() == 0 || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("PodMonitor selector %v does not select hookbridge's pods", pm.Spec.Selector)
	}
	c, _ := bridgeContainer(&d.Spec.Template.Spec)
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("PodMonitor endpoints %+v, want one", pm.Spec.PodMetricsEndpoints)
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	named := false
	for _, p := range c.Ports {
		named = named || (ep.Port != nil && p.Name == *ep.Port && p.ContainerPort == adminPort)
	}
	if !named || ep.Path != "/metrics" {
		t.Errorf("PodMonitor scrapes port %v path %q, want the admin container port and /metrics", ep.Port, ep.Path)
	}

	var file, cr map[string]any
	readYAML(t, "prometheus/alerts.yaml", &file)
	readYAML(t, "kubernetes/components/monitoring/prometheusrule.yaml", &cr)
	if !reflect.DeepEqual(file["groups"], cr["spec"].(map[string]any)["groups"]) {
		t.Errorf("the PrometheusRule's groups differ from prometheus/alerts.yaml: copy the groups over")
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
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

func loadAlertRules(t *testing.T) alertRules {
	t.Helper()
	b, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var r alertRules
	if err := yaml.UnmarshalStrict(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// operationsDoc is where the metrics and the alerts are documented.
const operationsDoc = "../docs/operations.md"

// TestAlertRules: each rule has a severity and a summary, reads only metrics
// the operations guide lists, and the alerts operators rely on exist.
// (Syntax and behaviour: TestAlertRulesUnit.)
func TestAlertRules(t *testing.T) {
	doc, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	metricName := regexp.MustCompile(`hookbridge_[a-z_]+`)
	seen := map[string]bool{}
	for _, g := range loadAlertRules(t).Groups {
		for _, rule := range g.Rules {
			seen[rule.Alert] = true
			if rule.Expr == "" || rule.Labels["severity"] == "" || rule.Annotations["summary"] == "" {
				t.Errorf("%s: want expr, labels.severity and annotations.summary", rule.Alert)
			}
			for _, name := range metricName.FindAllString(rule.Expr, -1) {
				base := strings.TrimSuffix(name, "_bucket")
				if !bytes.Contains(doc, []byte("`"+base+"`")) {
					t.Errorf("%s: %s is not a metric listed in %s", rule.Alert, name, operationsDoc)
				}
			}
		}
	}
	for _, want := range []string{
		"HookbridgeSignatureFailureSpike", "HookbridgeBrokerDown", "HookbridgeUnavailableRatio", "HookbridgePublishLatencyHigh",
		"HookbridgeSecretReloadFailing", "HookbridgeDeadLetters", "HookbridgeNoWebhooks",
		"HookbridgeCertificateExpiresSoon", "HookbridgeCertificateExpiresVerySoon",
	} {
		if !seen[want] {
			t.Errorf("alert %s missing", want)
		}
	}
}

// TestQuietTimePatch applies the operations guide's patch for the quiet time
// of HookbridgeNoWebhooks in an overlay, as a user would, and checks that it
// changes that rule and no other.
func TestQuietTimePatch(t *testing.T) {
	doc, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)quiet time of\\s+`HookbridgeNoWebhooks`.*?```yaml\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatalf("%s has no patch for the quiet time of HookbridgeNoWebhooks", operationsDoc)
	}
	overlay := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" +
		"resources:\n  - ../../base\ncomponents:\n  - ../../components/monitoring\n" + string(m[1])
	r, err := build(sourceFS(t, map[string]string{"examples/quiet/kustomization.yaml": overlay}), "examples/quiet")
	if err != nil {
		t.Fatalf("the operations guide's patch does not build: %v", err)
	}
	for _, g := range r.promRules[0].Spec.Groups {
		for _, rule := range g.Rules {
			want := ""
			for _, fg := range loadAlertRules(t).Groups {
				for _, fr := range fg.Rules {
					if fr.Alert == rule.Alert {
						want = fr.For
					}
				}
			}
			if rule.Alert == "HookbridgeNoWebhooks" {
				want = "24h"
			}
			got := ""
			if rule.For != nil {
				got = string(*rule.For)
			}
			if got != want {
				t.Errorf("after the patch, %s has for %q, want %q", rule.Alert, got, want)
			}
		}
	}
}
