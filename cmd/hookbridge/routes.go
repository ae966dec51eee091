package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/schema"
)

// RouteEnv is one OpenAI endpoint of a bridge with several:
// HOOKBRIDGE_ROUTES_<n>_NAME, _PATH, _SECRETS, _SECRETS_FILE, _PREFIX.
type RouteEnv struct {
	Name        string `env:"NAME" help:"route name: the hookbridge-route header, the route metric label and part of the dedup key (a-z, 0-9, _ and -)"`
	Path        string `env:"PATH" help:"webhook path of the route"`
	Secrets     string `env:"SECRETS" help:"signing secrets of the route's OpenAI endpoint, separated by spaces or commas"`
	SecretsFile string `env:"SECRETS_FILE" help:"file holding the route's secrets; re-read on its own when it changes and on SIGHUP"`
	Prefix      string `env:"PREFIX" help:"subject/topic prefix of the route (default HOOKBRIDGE_TOPIC_PREFIX)"`
}

// RoutesEnv lists the routes, n = 0, 1, … without gaps. Without any, the
// single-endpoint variables form the route named default.
type RoutesEnv struct {
	Routes []RouteEnv `envPrefix:"ROUTES_"`
}

// routeConfig is one route as the bridge uses it.
type routeConfig struct {
	name, path, prefix string
	secretsFile        string
	// env is the route's variable prefix, for messages:
	// HOOKBRIDGE_ROUTES_<n>_, or HOOKBRIDGE_ for the default route.
	env string
	// parse turns the secrets file's content (nil without one) into the
	// route's secrets, from every source in order.
	parse   func(file []byte) ([]ingest.Secret, error)
	secrets []ingest.Secret
}

// routeVarFields are the variables of one route, without the prefix.
var routeVarFields = []string{"NAME", "PATH", "SECRETS", "SECRETS_FILE", "PREFIX"}

// singleEndpointVars are what routes replace: set together with routes,
// which of them is meant is anyone's guess.
var singleEndpointVars = []string{envPrefix + "PATH", envPrefix + "SECRETS", envPrefix + "SECRETS_FILE", openAISecretVar}

// routeName is what a route name may be: it goes into a header, a metric
// label and every dedup key of the route.
var routeName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// defaultRoute is the route of the single-endpoint variables.
func (c *config) defaultRoute(environ map[string]string) routeConfig {
	return routeConfig{
		name: schema.DefaultRoute, path: c.Path, prefix: c.TopicPrefix, secretsFile: c.SecretsFile,
		env: envPrefix, secrets: c.secrets,
		parse: func(file []byte) ([]ingest.Secret, error) { return c.Endpoint.parseSecrets(environ, file) },
	}
}

// loadRoutes builds the routes of HOOKBRIDGE_ROUTES_<n>_*, reading their
// secrets, and adds a problem for everything wrong with them.
func (c *config) loadRoutes(environ map[string]string, p *problems) {
	var both []string
	for _, v := range singleEndpointVars {
		if strings.TrimSpace(environ[v]) != "" {
			both = append(both, v)
		}
	}
	if len(both) > 0 {
		p.add("ROUTES_0_NAME", "routes are set, and so are %s: with routes every endpoint is a route; move the single endpoint into a route (named default to keep its dedup keys) and unset them",
			strings.Join(both, ", "))
	}
	names, paths := map[string]string{}, map[string]string{}
	for i, r := range c.Routes {
		rc := r.config(i, c.TopicPrefix)
		if !routeName.MatchString(r.Name) {
			p.add(rc.v("NAME"), "%q must be 1 to 63 characters of a-z, 0-9, _ and -, starting with a letter or digit", r.Name)
		} else if other, dup := names[r.Name]; dup {
			p.add(rc.v("NAME"), "%q is also the name of %s", r.Name, other)
		}
		names[r.Name] = envPrefix + rc.v("NAME")
		if !strings.HasPrefix(r.Path, "/") {
			p.add(rc.v("PATH"), "%q must be set and start with /", r.Path)
		} else if other, dup := paths[r.Path]; dup {
			p.add(rc.v("PATH"), "%q is also the path of %s", r.Path, other)
		}
		paths[r.Path] = envPrefix + rc.v("PATH")
		if !schema.Type(rc.prefix).Routable() {
			p.add(rc.v("PREFIX"), "%q must be dot-separated tokens of a-z, 0-9 and _", rc.prefix)
		}
		file, err := r.readSecretsFile(rc)
		if err == nil {
			rc.secrets, err = rc.parse(file)
		}
		switch {
		case err != nil:
			*p = append(*p, err)
		case len(rc.secrets) == 0:
			p.add(rc.v("SECRETS"), "no signing secret: set it or %s%s to the whsec_… secret of the route's OpenAI endpoint", envPrefix, rc.v("SECRETS_FILE"))
		}
		c.routes = append(c.routes, rc)
	}
}

// config is r as the bridge uses it, its secrets not yet read.
func (r RouteEnv) config(i int, defaultPrefix string) routeConfig {
	rc := routeConfig{
		name: r.Name, path: r.Path, prefix: r.Prefix, secretsFile: r.SecretsFile,
		env: envPrefix + "ROUTES_" + strconv.Itoa(i) + "_",
	}
	if rc.prefix == "" {
		rc.prefix = defaultPrefix
	}
	rc.parse = func(file []byte) ([]ingest.Secret, error) {
		var parts, from []string
		if strings.TrimSpace(r.Secrets) != "" {
			parts, from = append(parts, r.Secrets), append(from, rc.env+"SECRETS")
		}
		if r.SecretsFile != "" {
			parts, from = append(parts, string(file)), append(from, rc.env+"SECRETS_FILE")
		}
		if len(parts) == 0 {
			return nil, nil
		}
		s, err := ingest.ParseSecrets(strings.Join(parts, " "))
		if err != nil {
			return nil, fmt.Errorf("%s:\n%w", strings.Join(from, "+"), err)
		}
		return s, nil
	}
	return rc
}

// v is the name of the route's variable field without HOOKBRIDGE_, for
// problems.add.
func (rc routeConfig) v(field string) string { return strings.TrimPrefix(rc.env, envPrefix) + field }

func (r RouteEnv) readSecretsFile(rc routeConfig) ([]byte, error) {
	if r.SecretsFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(r.SecretsFile)
	if err != nil {
		return nil, fmt.Errorf("%sSECRETS_FILE: %w", rc.env, err)
	}
	return b, nil
}

// checkRouteVars finds the route variables the env package does not read: a
// numbering gap ends the list there, and a misspelt field is ignored.
func (c *config) checkRouteVars(environ map[string]string, p *problems) {
	pre := envPrefix + "ROUTES_"
	var bad []string
	for k := range environ {
		rest, ok := strings.CutPrefix(k, pre)
		if !ok {
			continue
		}
		num, field, _ := strings.Cut(rest, "_")
		n, err := strconv.Atoi(num)
		switch {
		case err != nil || n < 0 || strconv.Itoa(n) != num:
			bad = append(bad, k+": not HOOKBRIDGE_ROUTES_<n>_<field> with n = 0, 1, …")
		case n >= len(c.Routes):
			bad = append(bad, fmt.Sprintf("%s: routes are numbered from 0 without gaps, and there is no HOOKBRIDGE_ROUTES_%d_*", k, len(c.Routes)))
		case !slices.Contains(routeVarFields, field):
			bad = append(bad, fmt.Sprintf("%s: a route has %s", k, strings.Join(routeVarFields, ", ")))
		}
	}
	sort.Strings(bad)
	for _, b := range bad {
		*p = append(*p, errors.New(b))
	}
}

// routeNames lists the names of the routes, in order.
func (c *config) routeNames() []string {
	out := make([]string, len(c.routes))
	for i, r := range c.routes {
		out[i] = r.name
	}
	return out
}

// buildRoutes makes each route's verifier, secret reloader and metrics, and
// logs the routes: names, paths, prefixes and how many secrets, never which.
func (b *bridge) buildRoutes(environ map[string]string) ([]ingest.Route, error) {
	obs := b.metrics.enableRoutes(b.cfg.routeNames())
	counts := make([]atomic.Int64, len(b.cfg.routes))
	var out []ingest.Route
	for i, rc := range b.cfg.routes {
		v, err := ingest.NewVerifier(rc.secrets, ingest.WithTolerance(b.cfg.Tolerance))
		if err != nil {
			return nil, fmt.Errorf("%sSECRETS: %w", rc.env, err)
		}
		loaded := func(n int) {
			obs[i].loaded.Set(float64(n))
			counts[i].Store(int64(n))
			var sum int64
			for j := range counts {
				sum += counts[j].Load()
			}
			b.metrics.secretsLoaded.Set(float64(sum))
		}
		b.secrets = append(b.secrets, newRouteSecretReloader(rc, v, b.metrics, loaded, b.log))
		out = append(out, ingest.Route{Name: rc.name, Path: rc.path, Prefix: rc.prefix, Verifier: v, Observer: obs[i]})
		b.log.Info().Str("route", rc.name).Str("path", rc.path).Str("prefix", rc.prefix).
			Int("secrets", len(rc.secrets)).Str("secrets_file", rc.secretsFile).Msg("route")
	}
	return out, nil
}

// routeSummaries describe the routes for /readyz?verbose.
func (c *config) routeSummaries() []string {
	out := make([]string, len(c.routes))
	for i, r := range c.routes {
		out[i] = fmt.Sprintf("route %s: POST %s -> %s.<type>", r.name, r.path, r.prefix)
	}
	return out
}

// basePrefix is the publisher's own prefix: the first route's, which is
// HOOKBRIDGE_TOPIC_PREFIX without routes.
func (c *config) basePrefix() string {
	if len(c.routes) == 0 {
		return c.TopicPrefix
	}
	return c.routes[0].prefix
}

// routePrefixes lists the distinct prefixes of the routes, in order.
func (c *config) routePrefixes() []string {
	var out []string
	for _, r := range c.routes {
		if !slices.Contains(out, r.prefix) {
			out = append(out, r.prefix)
		}
	}
	return out
}

// routesConfigured reports whether any HOOKBRIDGE_ROUTES_* variable is set.
func routesConfigured(environ map[string]string) bool {
	for k := range environ {
		if strings.HasPrefix(k, envPrefix+"ROUTES_") {
			return true
		}
	}
	return false
}

// commandRoute is the route --route names, for send, tail and verify: one of
// HOOKBRIDGE_ROUTES_<n>_*, or, without routes, default for the single
// endpoint. list is its secrets' text (from every source, in order).
func commandRoute(environ map[string]string, name string) (rc routeConfig, list string, err error) {
	e, err := parseEnv[struct {
		Endpoint
		RoutesEnv
		MessageEnv
	}](environ)
	if err != nil {
		return routeConfig{}, "", err
	}
	if len(e.Routes) == 0 && name == schema.DefaultRoute {
		c := &config{Endpoint: e.Endpoint, MessageEnv: e.MessageEnv}
		file, err := e.readSecretsFile()
		if err != nil {
			return routeConfig{}, "", err
		}
		list, _ = e.secretList(environ, file)
		return c.defaultRoute(environ), list, nil
	}
	var names []string
	for i, r := range e.Routes {
		if r.Name != name {
			names = append(names, r.Name)
			continue
		}
		rc = r.config(i, e.TopicPrefix)
		file, err := r.readSecretsFile(rc)
		if err != nil {
			return routeConfig{}, "", err
		}
		if strings.TrimSpace(r.Secrets) != "" {
			list = r.Secrets
		}
		if r.SecretsFile != "" {
			list = strings.TrimSpace(list + " " + string(file))
		}
		return rc, list, nil
	}
	if len(names) == 0 {
		return routeConfig{}, "", fmt.Errorf("--route %q: no routes are configured (HOOKBRIDGE_ROUTES_<n>_NAME); without them the only route is %s", name, schema.DefaultRoute)
	}
	return routeConfig{}, "", fmt.Errorf("--route %q: no such route; the routes are %s", name, strings.Join(names, ", "))
}
