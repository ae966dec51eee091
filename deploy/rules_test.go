package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/template"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
	"sigs.k8s.io/yaml"
)

// ruleTestFile is the format of `promtool test rules` (alert tests only), so
// the same file runs with promtool where it is installed and here without it.
type ruleTestFile struct {
	RuleFiles          []string        `json:"rule_files"`
	EvaluationInterval model.Duration  `json:"evaluation_interval"`
	Tests              []ruleTestGroup `json:"tests"`
}

type ruleTestGroup struct {
	Name        string         `json:"name"`
	Interval    model.Duration `json:"interval"`
	InputSeries []struct {
		Series string `json:"series"`
		Values string `json:"values"`
	} `json:"input_series"`
	AlertRuleTests []alertTestCase `json:"alert_rule_test"`
}

type alertTestCase struct {
	EvalTime  model.Duration `json:"eval_time"`
	Alertname string         `json:"alertname"`
	ExpAlerts []struct {
		ExpLabels      map[string]string `json:"exp_labels"`
		ExpAnnotations map[string]string `json:"exp_annotations"`
	} `json:"exp_alerts"`
}

// TestAlertRulesUnit runs prometheus/alerts_test.yaml the way promtool does,
// with Prometheus's own rule parser and validation (rulefmt), PromQL engine
// and template expansion: every rule is evaluated at each evaluation
// interval from 0 to the last eval_time (so `for` counts as in Prometheus),
// and at each eval_time the firing alerts of the named rule must be exactly
// the expected ones, labels and rendered annotations. (Prometheus's rule
// manager itself is not used: its package pulls in the whole server, remote
// storage and cloud SDKs included, about 700 MB of modules.)
func TestAlertRulesUnit(t *testing.T) {
	const file = "prometheus/alerts_test.yaml"
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleTestFile
	if err := yaml.UnmarshalStrict(raw, &f); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if f.EvaluationInterval == 0 {
		f.EvaluationInterval = model.Duration(time.Minute)
	}
	var ruleFiles []string
	for _, rf := range f.RuleFiles {
		ruleFiles = append(ruleFiles, filepath.Join(filepath.Dir(file), rf))
	}

	// Every alert must be shown firing by at least one case.
	firedIn := map[string]bool{}
	for _, g := range f.Tests {
		for _, c := range g.AlertRuleTests {
			if len(c.ExpAlerts) > 0 {
				firedIn[c.Alertname] = true
			}
		}
	}
	for _, name := range alertNames(t) {
		if !firedIn[name] {
			t.Errorf("alert %s has no test case in which it fires", name)
		}
	}

	for i, g := range f.Tests {
		name := g.Name
		if name == "" {
			name = fmt.Sprintf("group %d", i)
		}
		t.Run(name, func(t *testing.T) {
			runRuleTestGroup(t, g, ruleFiles, time.Duration(f.EvaluationInterval))
		})
	}
}

func runRuleTestGroup(t *testing.T, g ruleTestGroup, ruleFiles []string, evalInterval time.Duration) {
	if g.Interval == 0 {
		g.Interval = model.Duration(evalInterval)
	}
	store := &memStorage{}
	for _, s := range g.InputSeries {
		if err := store.load(s.Series+" "+s.Values, time.Duration(g.Interval)); err != nil {
			t.Fatalf("input series %s: %v", s.Series, err)
		}
	}
	engine := promql.NewEngine(promql.EngineOpts{
		MaxSamples: 10_000_000, Timeout: time.Minute, EnableAtModifier: true, EnableNegativeOffset: true,
		NoStepSubqueryIntervalFn: func(int64) int64 { return evalInterval.Milliseconds() },
	})
	defer engine.Close()
	query := func(ctx context.Context, expr string, ts time.Time) (promql.Vector, error) {
		q, err := engine.NewInstantQuery(ctx, store, nil, expr, ts)
		if err != nil {
			return nil, err
		}
		defer q.Close()
		res := q.Exec(ctx)
		if res.Err != nil {
			return nil, res.Err
		}
		switch v := res.Value.(type) {
		case promql.Vector:
			return v, nil
		case promql.Scalar:
			return promql.Vector{promql.Sample{T: v.T, F: v.V, Metric: labels.EmptyLabels()}}, nil
		}
		return nil, fmt.Errorf("rule expression %q returns %s, not a vector", expr, res.Value.Type())
	}

	var alerts []*alertRule
	for _, f := range ruleFiles {
		groups, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, parser.NewParser(parser.Options{}), promslog.NewNopLogger())
		if len(errs) > 0 {
			t.Fatalf("%s: %v", f, errs)
		}
		for _, rg := range groups.Groups {
			if rg.Interval != 0 || rg.QueryOffset != nil || rg.Limit != 0 || len(rg.Labels) > 0 {
				t.Fatalf("group %s: interval, query_offset, limit and labels are not supported by this test", rg.Name)
			}
			for _, r := range rg.Rules {
				if r.Alert == "" || r.KeepFiringFor != 0 {
					t.Fatalf("rule %q: only alerting rules without keep_firing_for are supported by this test", r.Record+r.Alert)
				}
				alerts = append(alerts, &alertRule{rule: r, active: map[uint64]*activeAlert{}})
			}
		}
	}
	byName := map[string][]*alertRule{}
	for _, a := range alerts {
		byName[a.rule.Alert] = append(byName[a.rule.Alert], a)
	}

	cases := map[time.Duration][]alertTestCase{}
	var maxT time.Duration
	for _, c := range g.AlertRuleTests {
		if byName[c.Alertname] == nil {
			t.Fatalf("alert_rule_test names %q, which no rule defines", c.Alertname)
		}
		d := time.Duration(c.EvalTime)
		if d%evalInterval != 0 {
			t.Fatalf("eval_time %s is not a multiple of the evaluation interval %s", d, evalInterval)
		}
		cases[d] = append(cases[d], c)
		maxT = max(maxT, d)
	}

	start := time.Unix(0, 0).UTC()
	ctx := context.Background()
	for at := time.Duration(0); at <= maxT; at += evalInterval {
		ts := start.Add(at)
		for _, a := range alerts {
			if err := a.eval(ctx, ts, query); err != nil {
				t.Fatalf("rule %s at %s: %v", a.rule.Alert, at, err)
			}
		}
		for _, c := range cases[at] {
			var got []string
			for _, a := range byName[c.Alertname] {
				for _, al := range a.active {
					if al.firing {
						got = append(got, al.labels.String()+" "+al.annotations.String())
					}
				}
			}
			var want []string
			for _, e := range c.ExpAlerts {
				l := map[string]string{labels.AlertName: c.Alertname}
				for k, v := range e.ExpLabels {
					l[k] = v
				}
				want = append(want, labels.FromMap(l).String()+" "+labels.FromMap(e.ExpAnnotations).String())
			}
			sort.Strings(got)
			sort.Strings(want)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s at %s:\n  want %d firing:\n    %s\n  got %d:\n    %s", c.Alertname, at,
					len(want), strings.Join(want, "\n    "), len(got), strings.Join(got, "\n    "))
			}
		}
	}
}

// alertRule is one alerting rule and its active alerts, evaluated as
// Prometheus's rule manager does: each result series becomes an alert
// (labels of the series without __name__, plus the rule's labels and
// alertname), pending from the first evaluation that returns it and firing
// once it has been returned for the rule's `for`; an alert whose series is
// no longer returned is gone (pending) or resolved (firing).
type alertRule struct {
	rule   rulefmt.Rule
	active map[uint64]*activeAlert
}

type activeAlert struct {
	labels, annotations labels.Labels
	activeAt            time.Time
	firing              bool
}

func (a *alertRule) eval(ctx context.Context, ts time.Time, query func(context.Context, string, time.Time) (promql.Vector, error)) error {
	res, err := query(ctx, a.rule.Expr, ts)
	if err != nil {
		return err
	}
	seen := map[uint64]bool{}
	for _, smpl := range res {
		data := template.AlertTemplateData(smpl.Metric.Map(), nil, "", smpl)
		expand := func(text string) (string, error) {
			defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
			return template.NewTemplateExpander(ctx, defs+text, "__alert_"+a.rule.Alert, data,
				model.Time(ts.UnixMilli()), template.QueryFunc(query), nil, nil).Expand()
		}
		lb := labels.NewBuilder(smpl.Metric).Del(model.MetricNameLabel)
		for k, v := range a.rule.Labels {
			x, err := expand(v)
			if err != nil {
				return fmt.Errorf("label %s: %w", k, err)
			}
			lb.Set(k, x)
		}
		lb.Set(labels.AlertName, a.rule.Alert)
		ann := map[string]string{}
		for k, v := range a.rule.Annotations {
			if ann[k], err = expand(v); err != nil {
				return fmt.Errorf("annotation %s: %w", k, err)
			}
		}
		lset := lb.Labels()
		h := lset.Hash()
		if seen[h] {
			return fmt.Errorf("two result series with the labels %s", lset)
		}
		seen[h] = true
		if al, ok := a.active[h]; ok {
			al.annotations = labels.FromMap(ann)
			continue
		}
		a.active[h] = &activeAlert{labels: lset, annotations: labels.FromMap(ann), activeAt: ts}
	}
	for h, al := range a.active {
		switch {
		case !seen[h]:
			delete(a.active, h)
		case ts.Sub(al.activeAt) >= time.Duration(a.rule.For):
			al.firing = true
		}
	}
	return nil
}

// memStorage holds the input series in memory, for the PromQL engine.
type memStorage struct{ series []storage.Series }

// load adds one series in promtool's notation ('metric{…} 0+1x10 _ 5'),
// its samples interval apart from time 0.
func (m *memStorage) load(desc string, interval time.Duration) error {
	lset, vals, err := parser.NewParser(parser.Options{}).ParseSeriesDesc(desc)
	if err != nil {
		return err
	}
	var samples []chunks.Sample
	for i, v := range vals {
		if v.Histogram != nil {
			return errors.New("native histograms are not supported by this test")
		}
		if !v.Omitted {
			samples = append(samples, floatSample{t: int64(i) * interval.Milliseconds(), f: v.Value})
		}
	}
	m.series = append(m.series, storage.NewListSeries(lset, samples))
	return nil
}

func (m *memStorage) Querier(int64, int64) (storage.Querier, error) { return m, nil }

func (m *memStorage) Select(_ context.Context, _ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	var out []storage.Series
	for _, s := range m.series {
		match := true
		for _, mt := range ms {
			match = match && mt.Matches(s.Labels().Get(mt.Name))
		}
		if match {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels(), out[j].Labels()) < 0 })
	return &seriesSet{series: out, i: -1}
}

func (m *memStorage) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (m *memStorage) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (m *memStorage) Close() error { return nil }

type seriesSet struct {
	series []storage.Series
	i      int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

type floatSample struct {
	t int64
	f float64
}

func (s floatSample) T() int64                      { return s.t }
func (s floatSample) ST() int64                     { return 0 }
func (s floatSample) F() float64                    { return s.f }
func (s floatSample) H() *histogram.Histogram       { return nil }
func (s floatSample) FH() *histogram.FloatHistogram { return nil }
func (s floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s floatSample) Copy() chunks.Sample           { return s }

// alertNames lists the alerts of prometheus/alerts.yaml.
func alertNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, g := range loadAlertRules(t).Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
		}
	}
	return names
}
