package bench

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/ops/opstest"
	"github.com/u2net-vk/u2net/u2net"
	"github.com/u2net-vk/u2net/vk"
)

// Tune measures the rules, then every value of every choice, picks only
// what it measured, confirms each pick against the rules measured again,
// and leaves the engine's choices as they were.
func TestTune(t *testing.T) {
	g := opstest.GPU(t, vk.Options{})
	if err := g.SetKernel("norm=chunked"); err != nil {
		t.Fatal(err)
	}
	defer g.SetKernels(nil)
	tu, err := Tune(g, u2net.ModeUniversal, NetSetting{Domains: 1, Base: 2, Batch: 1}.At(8), 1, func(string) {})
	if err != nil {
		t.Fatalf("Tune: %v", err)
	}
	if k := g.Kernels(); !slices.Equal(k, []string{"norm=chunked"}) {
		t.Errorf("choices after Tune: %v, want them as set (norm=chunked)", k)
	}
	info := g.Device().Info()
	if tu.Device != info.Name || tu.DriverVersion != info.DriverVersion || !strings.Contains(tu.Setting, "the universal network at ") ||
		!strings.Contains(tu.Setting, "8³") ||
		tu.Measured.IsZero() {
		t.Errorf("tuning of %+v at %q measured %v, want this device at 8³", tu.Device, tu.Setting, tu.Measured)
	}
	want := [][]string{nil}
	for _, c := range ops.KernelChoices() {
		for _, v := range c.Values {
			want = append(want, []string{c.Name + "=" + v})
		}
	}
	if len(tu.Results) < len(want) {
		t.Fatalf("%d results, want at least %d", len(tu.Results), len(want))
	}
	for i, w := range want {
		if r := tu.Results[i]; !slices.Equal(r.Choices, w) || r.Again || !r.Same && !(r.StepGPUMS > 0 && r.ForwardGPUMS > 0) {
			t.Errorf("result %d: %+v, want %v measured, or the rules' dispatches", i, r, w)
		}
	}
	// The device's own class is the rules; the other class is not.
	own, other := "device-class=gpu", "device-class=cpu"
	if info.Type == vk.TypeCPU {
		own, other = other, own
	}
	for choice, same := range map[string]bool{own: true, other: false} {
		i := slices.IndexFunc(tu.Results, func(r ops.KernelTuningResult) bool { return slices.Equal(r.Choices, []string{choice}) })
		if i < 0 || tu.Results[i].Same != same {
			t.Errorf("%s: result %+v, want the rules' dispatches %t", choice, tu.Results[max(i, 0)], same)
		}
	}
	again := 0
	for _, r := range tu.Results[len(want):] {
		if r.Again {
			again++
		}
	}
	for _, pick := range [][]string{tu.Train, tu.Predict} {
		if len(pick) == 0 {
			continue
		}
		// A pick was measured, and measured again after the rules.
		n := slices.IndexFunc(tu.Results, func(r ops.KernelTuningResult) bool { return r.Again && slices.Equal(r.Choices, pick) })
		if n < 1 || tu.Results[n-1].Choices != nil || !tu.Results[n-1].Again {
			t.Errorf("pick %v was not confirmed against the rules measured again: %+v", pick, tu.Results)
		}
	}
	// In pairs (the rules, then a pick), whether the pick won again or not.
	if again%2 != 0 {
		t.Errorf("%d measurements again, want pairs", again)
	}
	var out bytes.Buffer
	WriteTuning(&out, tu)
	for _, s := range []string{"kernel tuning of " + info.Name, "(engine's own rules)", "depthwise-stats=separate", "for training: ", "for prediction: "} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("the text lacks %q:\n%s", s, out.String())
		}
	}
}

// tuneCandidates takes, per choice, its fastest value among those beating
// the rules by more than the margin, fastest first.
func TestTuneCandidates(t *testing.T) {
	r := func(choice string, ms float64) KernelResult { return KernelResult{Choice: choice, StepGPUMS: ms} }
	base := r("", 100)
	for _, c := range []struct {
		name    string
		singles []KernelResult
		want    []string
	}{
		{"none faster", []KernelResult{r("a=x", 101), r("a=y", 100)}, nil},
		{"within the margin", []KernelResult{r("a=x", 97.5), r("b=on", 99)}, nil},
		{"the fastest value", []KernelResult{r("a=x", 90), r("a=y", 80), r("b=on", 99)}, []string{"a=y"}},
		{"fastest first", []KernelResult{r("a=x", 96), r("b=on", 101), r("b=off", 90)}, []string{"b=off", "a=x"}},
		{"a failure", []KernelResult{r("a=x", 96), {Choice: "b=on", Error: "lost"}}, []string{"a=x"}},
	} {
		var got []string
		for _, k := range tuneCandidates(base, c.singles, func(k KernelResult) float64 { return k.StepGPUMS }) {
			got = append(got, k.Choice)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// The picks on made-up times: a value beating the rules, a lucky one that
// does not win again, a failing one, a pair slower together than the
// better alone, a pair faster together but not with a third.
func TestTuneDecides(t *testing.T) {
	type times struct{ step, fwd float64 }
	for _, c := range []struct {
		name            string
		times           map[string][]times // by choices joined; successive measurements
		train, predict  []string
		measuredAgainOf []string
	}{
		{"nothing faster", map[string][]times{}, nil, nil, nil},
		{"a value that changes nothing", map[string][]times{"norm=fused": {{50, 5}}, "norm=chunked": {{80, 10}}},
			[]string{"norm=chunked"}, nil, []string{"norm=chunked"}},
		{"the rules' dispatches unknown", map[string][]times{"norm=fused": {{50, 5}}},
			[]string{"norm=fused"}, []string{"norm=fused"}, []string{"norm=fused"}},
		{"a faster value for both", map[string][]times{"direct=off": {{50, 5}}}, []string{"direct=off"}, []string{"direct=off"},
			[]string{"direct=off"}},
		{"lucky once", map[string][]times{"norm=chunked": {{50, 5}, {100, 10}}}, nil, nil, []string{"norm=chunked"}},
		{"forward only", map[string][]times{"depthwise-stats=separate": {{100, 5}}}, nil, []string{"depthwise-stats=separate"},
			[]string{"depthwise-stats=separate"}},
		{"a pair slower than the better alone", map[string][]times{
			"depthwise-forward=stream": {{90, 10}}, "norm=chunked": {{80, 10}},
			"depthwise-forward=stream,norm=chunked": {{95, 10}}},
			[]string{"norm=chunked"}, nil, []string{"norm=chunked"}},
		{"a failing value", map[string][]times{"direct=off": {{-1, -1}}, "norm=chunked": {{50, 5}}}, []string{"norm=chunked"},
			[]string{"norm=chunked"}, []string{"norm=chunked"}},
		{"a pair faster together", map[string][]times{
			"depthwise-forward=stream": {{90, 10}}, "norm=chunked": {{80, 10}},
			"depthwise-forward=stream,norm=chunked": {{70, 10}}},
			[]string{"depthwise-forward=stream", "norm=chunked"}, nil, []string{"depthwise-forward=stream,norm=chunked"}},
		{"a pair, not the third", map[string][]times{
			"depthwise-forward=stream": {{90, 10}}, "norm=chunked": {{80, 10}}, "direct=off": {{95, 10}},
			"depthwise-forward=stream,norm=chunked":            {{70, 10}},
			"depthwise-forward=stream,norm=chunked,direct=off": {{75, 10}}},
			[]string{"depthwise-forward=stream", "norm=chunked"}, nil, []string{"depthwise-forward=stream,norm=chunked"}},
	} {
		// The values under which the network records the rules'
		// dispatches (made-up fingerprints: 1 for the rules), or none
		// where the rules' cannot be told.
		same := map[string][]string{"a value that changes nothing": {"norm=fused"}}[c.name]
		unknown := c.name == "the rules' dispatches unknown"
		dispatches := func(choices []string) (uint64, error) {
			name := strings.Join(choices, ",")
			switch {
			case name == "" && unknown:
				return 0, errors.New("does not fit")
			case name == "" || slices.Contains(same, name):
				return 1, nil
			}
			return uint64(2 + len(name)), nil
		}
		seen := map[string]int{}
		measure := func(choices []string) (KernelResult, error) {
			name := strings.Join(choices, ",")
			ts, n := c.times[name], seen[name]
			seen[name]++
			tm := times{100, 10} // the rules, and what is no faster
			if len(ts) > 0 {
				tm = ts[min(n, len(ts)-1)]
			}
			if tm.step < 0 { // the device fails under these choices
				return KernelResult{}, errors.New("does not fit")
			}
			return KernelResult{Choice: name, StepGPUMS: tm.step, ForwardGPUMS: tm.fwd}, nil
		}
		tu, err := tune(ops.KernelTuning{}, measure, dispatches)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, v := range same {
			i := slices.IndexFunc(tu.Results, func(r ops.KernelTuningResult) bool { return slices.Equal(r.Choices, []string{v}) })
			if seen[v] > 0 || i < 0 || !tu.Results[i].Same {
				t.Errorf("%s: %s measured %d times, result %+v; want it marked the rules' and not measured", c.name, v, seen[v], tu.Results[max(i, 0)])
			}
		}
		if !slices.Equal(tu.Train, c.train) || !slices.Equal(tu.Predict, c.predict) {
			t.Errorf("%s: picks %v for training, %v for prediction; want %v, %v", c.name, tu.Train, tu.Predict, c.train, c.predict)
		}
		var again []string
		for _, r := range tu.Results {
			if r.Again && len(r.Choices) > 0 {
				again = append(again, strings.Join(r.Choices, ","))
			}
			if ts := c.times[strings.Join(r.Choices, ",")]; len(ts) > 0 && ts[0].step < 0 && r.Error != "does not fit" {
				t.Errorf("%s: %v failed without its error recorded: %+v", c.name, r.Choices, r)
			}
		}
		if !slices.Equal(again, c.measuredAgainOf) {
			t.Errorf("%s: measured again %v, want %v", c.name, again, c.measuredAgainOf)
		}
	}
}

// The text names the picks with their speed-up as measured again, or says
// that none won.
func TestWriteTuning(t *testing.T) {
	tu := ops.KernelTuning{Device: "dev", Driver: "drv", Setting: "the universal network at 8³", Train: []string{"norm=chunked"},
		Results: []ops.KernelTuningResult{
			{StepGPUMS: 100, ForwardGPUMS: 10},
			{Choices: []string{"norm=chunked"}, StepGPUMS: 80, ForwardGPUMS: 10},
			{Choices: []string{"direct=off"}, Error: "does not fit"},
			{Choices: []string{"direct=on"}, Same: true},
			{Again: true, StepGPUMS: 96, ForwardGPUMS: 10},
			{Choices: []string{"norm=chunked"}, Again: true, StepGPUMS: 80, ForwardGPUMS: 10},
		}}
	var out bytes.Buffer
	WriteTuning(&out, tu)
	// Each line holds its words, however the columns are aligned.
	for _, words := range [][]string{{"kernel tuning of dev (driver drv), the universal network at 8³"},
		{"direct=off", "failed: does not fit"}, {"direct=on", "the rules' dispatches: not measured"}, {"norm=chunked, again"},
		{"for training: norm=chunked (1.20× the rules' step, measured again)"},
		{"for prediction: the engine's own rules (no choice beat them by more than 3%, twice)"}} {
		if !slices.ContainsFunc(strings.Split(out.String(), "\n"), func(line string) bool {
			return !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(line, w) })
		}) {
			t.Errorf("no line of the text holds %q:\n%s", words, out.String())
		}
	}
}
