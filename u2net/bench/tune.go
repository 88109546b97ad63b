package bench

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/u2net-vk/u2net/ops"
)

// TuneMargin is how much faster than the engine's own rules a kernel
// choice must make the network to be taken: a share of its time, above
// the spread of the medians of repeated measurements on a GPU (about 1%),
// so that noise does not choose.
const TuneMargin = 0.03

// Tune measures the network of mode at set under the engine's own
// kernel rules (three times: a warm-up, then the faster of two), then under
// each value of each kernel choice alone, and picks for training steps
// (their GPU time) and for forward passes the values that beat the rules
// by more than TuneMargin (a value the device fails to run is recorded with
// its error and not picked). Choices can interact, so where several beat
// the rules they are added to the fastest one by one, fastest first, each
// kept if the set with it is faster by more than TuneMargin too. The set
// picked is then measured again, after the rules once more, and kept only
// where it wins again. A value under which the network records the
// dispatches it records under the rules (ops.GPU.RecordedDispatches)
// changes nothing on the device and is not measured. The engine's choices
// are as they were afterwards (each measurement sets them back).
func Tune(g *ops.GPU, mode string, set NetSetting, repeats int, log func(string)) (ops.KernelTuning, error) {
	t, err := tune(ops.NewKernelTuning(g), func(choices []string) (KernelResult, error) {
		return withKernels(g, mode, &set, repeats, log, choices) // each from the size the last one fitted
	}, func(choices []string) (uint64, error) {
		return dispatchesUnder(g, mode, set, choices) // at the size the rules were measured at
	})
	t.Setting = fmt.Sprintf("the %s network at %s", mode, t.Setting)
	return t, err
}

// tune is Tune with the network measured under some kernel choices by
// measure, and the fingerprint of its dispatches under them made by
// dispatches; t is the tuning to fill. Its setting is the one measured,
// which shrinks where the device cannot hold the one asked for.
func tune(t ops.KernelTuning, measure func(choices []string) (KernelResult, error), dispatches func(choices []string) (uint64, error)) (ops.KernelTuning, error) {
	// The first measurement of a process runs cold (lavapipe: the rules'
	// forward pass 1.2× slower than when measured again at the end), and a
	// slow one would flatter every choice against it: the rules are
	// measured three times, the first to warm up, and the faster of the
	// others is the baseline.
	if _, err := measure(nil); err != nil {
		return t, err
	}
	var base KernelResult
	for range 2 {
		r, err := measure(nil)
		if err != nil {
			return t, err
		}
		if base.StepGPUMS == 0 || r.StepGPUMS < base.StepGPUMS {
			base.StepGPUMS, base.StepMS = r.StepGPUMS, r.StepMS
		}
		if base.ForwardGPUMS == 0 || r.ForwardGPUMS < base.ForwardGPUMS {
			base.ForwardGPUMS, base.ForwardMS = r.ForwardGPUMS, r.ForwardMS
		}
		base.Setting = r.Setting
	}
	measured := []KernelResult{base}
	// once measures the network under choices unless it was, recording a
	// failure as the result's error.
	once := func(choices []string) KernelResult {
		joined := strings.Join(choices, ",")
		if i := slices.IndexFunc(measured, func(r KernelResult) bool { return r.Choice == joined }); i >= 0 {
			return measured[i]
		}
		r, err := measure(choices)
		if err != nil {
			r = KernelResult{Choice: joined, Error: err.Error()}
		}
		measured = append(measured, r)
		return r
	}
	// A value under which the network records what it records under the
	// rules is not measured: its times would differ from theirs by noise
	// alone. (Where the rules' dispatches cannot be told, every value is.)
	rules, rulesErr := dispatches(nil)
	sameAsRules := func(choices []string) bool {
		if rulesErr != nil {
			return false
		}
		fp, err := dispatches(choices)
		return err == nil && fp == rules
	}
	for _, c := range ops.KernelChoices() {
		for _, v := range c.Values {
			choice := c.Name + "=" + v
			if sameAsRules([]string{choice}) {
				measured = append(measured, KernelResult{Choice: choice, Setting: base.Setting, Same: true})
				continue
			}
			once([]string{choice})
		}
	}
	singles := slices.Clone(measured[1:])
	// combine adds the choices that beat the rules to the fastest one by
	// one, fastest first, each kept if the set with it is faster by more
	// than TuneMargin too.
	combine := func(time func(KernelResult) float64) []string {
		cands := tuneCandidates(base, singles, time)
		if len(cands) == 0 {
			return nil
		}
		picks, fastest := []string{cands[0].Choice}, time(cands[0])
		for _, c := range cands[1:] {
			try := inChoiceOrder(append(slices.Clone(picks), c.Choice))
			if r := once(try); r.Error == "" && time(r) < fastest*(1-TuneMargin) {
				picks, fastest = try, time(r)
			}
		}
		return picks
	}
	// confirm measures the rules once more, then the picks again, which
	// must beat the faster of the rules' measurements (the baseline and
	// this one): a single measurement can be lucky.
	var confirmed []KernelResult // in pairs: the rules, then the picks
	confirm := func(picks []string, time func(KernelResult) float64) (bool, error) {
		joined := strings.Join(picks, ",")
		i := slices.IndexFunc(confirmed, func(r KernelResult) bool { return r.Choice == joined })
		if i < 0 {
			again, err := measure(nil)
			if err != nil {
				return false, err
			}
			r, err := measure(picks)
			if err != nil {
				r = KernelResult{Choice: joined, Error: err.Error()}
			}
			confirmed = append(confirmed, again, r)
			i = len(confirmed) - 1
		}
		rules := min(time(base), time(confirmed[i-1]))
		return confirmed[i].Error == "" && time(confirmed[i]) < rules*(1-TuneMargin), nil
	}
	step := func(r KernelResult) float64 { return r.StepGPUMS }
	fwd := func(r KernelResult) float64 { return r.ForwardGPUMS }
	for _, obj := range []struct {
		pick *[]string
		time func(KernelResult) float64
	}{{&t.Train, step}, {&t.Predict, fwd}} {
		picks := combine(obj.time)
		if len(picks) > 0 {
			won, err := confirm(picks, obj.time)
			if err != nil {
				return t, err
			}
			if !won {
				picks = nil
			}
		}
		*obj.pick = picks
	}
	t.Setting = base.Setting
	for i, r := range append(measured, confirmed...) {
		var choices []string
		if r.Choice != "" {
			choices = strings.Split(r.Choice, ",")
		}
		t.Results = append(t.Results, ops.KernelTuningResult{Choices: choices, StepGPUMS: r.StepGPUMS,
			ForwardGPUMS: r.ForwardGPUMS, Again: i >= len(measured), Same: r.Same, Error: r.Error})
	}
	return t, nil
}

// tuneCandidates is, for each kernel choice, its value that beats base by
// more than TuneMargin in the given time, the fastest where several do;
// fastest first.
func tuneCandidates(base KernelResult, singles []KernelResult, time func(KernelResult) float64) []KernelResult {
	fastest := map[string]KernelResult{}
	for _, r := range singles {
		if r.Error != "" || r.Same || time(r) >= time(base)*(1-TuneMargin) {
			continue
		}
		name, _, _ := strings.Cut(r.Choice, "=")
		if f, ok := fastest[name]; !ok || time(r) < time(f) {
			fastest[name] = r
		}
	}
	out := slices.Collect(maps.Values(fastest))
	slices.SortFunc(out, func(a, b KernelResult) int { return cmp.Compare(time(a), time(b)) })
	return out
}

// inChoiceOrder sorts choices ("name=value") in the order of
// ops.KernelChoices, so that a set has one name.
func inChoiceOrder(choices []string) []string {
	index := map[string]int{}
	for i, c := range ops.KernelChoices() {
		index[c.Name] = i
	}
	slices.SortFunc(choices, func(a, b string) int {
		na, _, _ := strings.Cut(a, "=")
		nb, _, _ := strings.Cut(b, "=")
		return cmp.Compare(index[na], index[nb])
	})
	return choices
}

// WriteTuning prints a tuning: each measurement's GPU times and speed-ups
// against the engine's own rules (measured last before it), then the
// choices picked.
func WriteTuning(w io.Writer, t ops.KernelTuning) {
	fmt.Fprintf(w, "kernel tuning of %s (driver %s), %s:\n", t.Device, t.Driver, t.Setting)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "choices\ttrain step GPU ms\tforward GPU ms\tstep speed-up\tforward speed-up\t")
	rules := t.Results[0] // each row against the last measurement of the rules before it
	for i, r := range t.Results {
		name, step, fwd := cmp.Or(strings.Join(r.Choices, ","), "(engine's own rules)"), "", ""
		if r.Again {
			name += ", again"
		}
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\tfailed: %s\t\t\t\t\n", name, r.Error)
			continue
		}
		if r.Same {
			fmt.Fprintf(tw, "%s\tthe rules' dispatches: not measured\t\t\t\t\n", name)
			continue
		}
		if i > 0 {
			step, fwd = ratio(rules.StepGPUMS, r.StepGPUMS), ratio(rules.ForwardGPUMS, r.ForwardGPUMS)
		}
		if len(r.Choices) == 0 {
			rules = r
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%s\t%s\t\n", name, r.StepGPUMS, r.ForwardGPUMS, step, fwd)
	}
	tw.Flush()
	for _, set := range []struct {
		what, pass string
		choices    []string
		time       func(ops.KernelTuningResult) float64
	}{{"training", "step", t.Train, func(r ops.KernelTuningResult) float64 { return r.StepGPUMS }},
		{"prediction", "forward pass", t.Predict, func(r ops.KernelTuningResult) float64 { return r.ForwardGPUMS }}} {
		if len(set.choices) == 0 {
			fmt.Fprintf(w, "for %s: the engine's own rules (no choice beat them by more than %.0f%%, twice)\n", set.what, 100*TuneMargin)
			continue
		}
		// The confirming measurement, against the faster of the rules'.
		speedup := ""
		i := slices.IndexFunc(t.Results, func(r ops.KernelTuningResult) bool { return r.Again && slices.Equal(r.Choices, set.choices) })
		if i > 0 {
			rules := min(set.time(t.Results[0]), set.time(t.Results[i-1]))
			speedup = fmt.Sprintf(" (%s the rules' %s, measured again)", ratio(rules, set.time(t.Results[i])), set.pass)
		}
		fmt.Fprintf(w, "for %s: %s%s\n", set.what, strings.Join(set.choices, " "), speedup)
	}
}
