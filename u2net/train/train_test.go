package train

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/u2net"
	"github.com/u2net-vk/u2net/u2net/dataset"
	"github.com/u2net-vk/u2net/u2net/predict"
	"github.com/u2net-vk/u2net/u2net/preprocess"
	"github.com/u2net-vk/u2net/u2net/synth"
)

func synthData(t *testing.T) []string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	infos, err := synth.Write(dir, synth.Config{Seed: 3, Cases: 3, TestCases: 1, Size: 16})
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, in := range infos[:2] {
		dirs = append(dirs, in.Dir)
	}
	return dirs
}

func tinyOptions(data []string, out string) Options {
	return Options{
		Data: data, Out: out, Epochs: 2, StepsPerEpoch: 2, Patch: [3]int{16, 16, 16}, Batch: 1,
		BaseChannels: 2, Pools: [3]int{2, 2, 2}, Seed: 5, ValFraction: 0.34, Workers: 1,
	}
}

var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// sameCheckpoints fails unless the checkpoints of the runs in a
// (uninterrupted) and b (resumed) hold the same parameters, bit for bit.
func sameCheckpoints(t *testing.T, a, b string) {
	t.Helper()
	ma, _, err := u2net.LoadFile(filepath.Join(a, CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	mb, _, err := u2net.LoadFile(filepath.Join(b, CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ma.Params {
		x, y := ma.Values[p.Name], mb.Values[p.Name]
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Fatalf("%s[%d]: uninterrupted %v, resumed %v", p.Name, i, x[i], y[i])
			}
		}
	}
}

// A run resumed without --patch takes the patch it began with (given or
// fitted) and continues exactly; options that change its steps are named
// in a warning.
func TestResumeTakesTheRunsOptions(t *testing.T) {
	data := synthData(t)
	ctx := context.Background()
	full := tinyOptions(data, filepath.Join(t.TempDir(), "full"))
	full.Patch = [3]int{8, 16, 12} // not what the data would give
	if _, err := Run(ctx, full, ops.NewCPU(), quiet, nil); err != nil {
		t.Fatal(err)
	}
	parts := full
	parts.Out = filepath.Join(t.TempDir(), "parts")
	parts.StopAfter = 3
	if _, err := Run(ctx, parts, ops.NewCPU(), quiet, nil); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	parts.StopAfter, parts.Resume, parts.Patch = 0, true, [3]int{}
	if _, err := Run(ctx, parts, ops.NewCPU(), log, nil); err != nil {
		t.Fatal(err)
	}
	sameCheckpoints(t, full.Out, parts.Out)
	m, err := u2net.Load(filepath.Join(parts.Out, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	for dom, d := range m.Config.Domains {
		plan, err := predict.Plan(m.Config, dom)
		if err != nil || plan.Patch != full.Patch {
			t.Errorf("domain %s: plan %+v, %v: want the patch %v recorded", d.Name, plan, err, full.Patch)
		}
	}
	if strings.Contains(logs.String(), "WARN") {
		t.Errorf("a resumption with the run's options warned:\n%s", logs.String())
	}

	changed := full
	changed.Out, changed.StopAfter = filepath.Join(t.TempDir(), "changed"), 1
	if _, err := Run(ctx, changed, ops.NewCPU(), quiet, nil); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	changed.StopAfter, changed.Resume, changed.Batch, changed.Seed = 0, true, 2, 9
	if _, err := Run(ctx, changed, ops.NewCPU(), log, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "does not continue exactly") || !strings.Contains(logs.String(), "changed=\"Batch, Seed\"") {
		t.Errorf("resuming with another batch and seed: log\n%s\nwants a warning naming Batch and Seed", logs.String())
	}
}

// A run stopped after three steps and resumed ends with the same weights as
// an uninterrupted run, whatever the number of goroutines building its
// batches ahead.
func TestResumeEqualsUninterrupted(t *testing.T) {
	data := synthData(t)
	ctx := context.Background()
	full := tinyOptions(data, filepath.Join(t.TempDir(), "full"))
	res, err := Run(ctx, full, ops.NewCPU(), quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 4 || len(res.BestDice) != 2 {
		t.Fatalf("result %+v", res)
	}
	parts := tinyOptions(data, filepath.Join(t.TempDir(), "parts"))
	parts.StopAfter, parts.Workers = 3, 3
	if res, err := Run(ctx, parts, ops.NewCPU(), quiet, nil); err != nil || !res.Stopped {
		t.Fatalf("first part: %+v, %v", res, err)
	}
	parts.StopAfter = 0
	if _, err := Run(ctx, parts, ops.NewCPU(), quiet, nil); err == nil {
		t.Fatal("a second run into the same folder without --resume was accepted")
	}
	parts.Resume = true
	if _, err := Run(ctx, parts, ops.NewCPU(), quiet, nil); err != nil {
		t.Fatal(err)
	}
	sameCheckpoints(t, full.Out, parts.Out)
	for _, f := range []string{ModelFile, MetricsFile, ProgressFile, OptionsFile} {
		if _, err := os.Stat(filepath.Join(full.Out, f)); err != nil {
			t.Errorf("run folder lacks %s", f)
		}
	}
	m, err := u2net.Load(filepath.Join(full.Out, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Config.Domains {
		if len(d.Plan) == 0 {
			t.Errorf("domain %s saved without its preprocessing plan", d.Name)
		}
	}
}

func TestDerivePools(t *testing.T) {
	for _, c := range []struct{ patch, want [3]int }{
		{[3]int{128, 128, 128}, [3]int{5, 5, 5}},
		{[3]int{16, 32, 32}, [3]int{2, 3, 3}},
		{[3]int{8, 64, 48}, [3]int{1, 4, 3}},
		{[3]int{12, 12, 12}, [3]int{1, 1, 1}},
	} {
		if got := DerivePools(c.patch); got != c.want {
			t.Errorf("DerivePools(%v) = %v, want %v", c.patch, got, c.want)
		}
	}
}

// A run from a trained model (--init) trains the domains of its data, found
// by name, whatever their index in the model: with the shared parameters
// frozen, a new domain's run leaves the model's other domain as it was.
func TestInitTrainsTheDataDomains(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	infos, err := synth.Write(dir, synth.Config{Seed: 3, Cases: 3, TestCases: 1, Size: 16})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first := tinyOptions([]string{infos[0].Dir}, filepath.Join(t.TempDir(), "first"))
	if _, err := Run(ctx, first, ops.NewCPU(), quiet, nil); err != nil {
		t.Fatal(err)
	}
	before, err := u2net.Load(filepath.Join(first.Out, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	second := tinyOptions([]string{infos[2].Dir}, filepath.Join(t.TempDir(), "second"))
	second.Init, second.FreezeShared = filepath.Join(first.Out, ModelFile), true
	res, err := Run(ctx, second, ops.NewCPU(), quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.BestDice[infos[2].Name]; !ok || len(res.BestDice) != 1 {
		t.Errorf("validated %v, want %s only", res.BestDice, infos[2].Name)
	}
	after, err := u2net.Load(filepath.Join(second.Out, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Config.Domains; len(got) != 2 || got[0].Name != infos[0].Name || got[1].Name != infos[2].Name {
		t.Fatalf("domains %v, want %s then %s", got, infos[0].Name, infos[2].Name)
	}
	changed := false
	for _, p := range after.Params {
		old, ok := before.Values[p.Name]
		if p.Domain == 1 {
			changed = changed || !ok
			continue
		}
		if !ok {
			t.Fatalf("%s is not in the first model", p.Name)
		}
		for i, v := range after.Values[p.Name] {
			if math.Float32bits(v) != math.Float32bits(old[i]) {
				t.Fatalf("%s[%d] changed from %v to %v: the run trained another domain than its data's", p.Name, i, old[i], v)
			}
		}
	}
	if !changed {
		t.Error("the new domain has no parameters of its own")
	}
}

func TestFormatDice(t *testing.T) {
	for _, c := range []struct {
		dice map[string]float64
		want string
	}{
		{nil, ""},
		{map[string]float64{"liver": 0.901234}, "liver 0.9012"},
		{map[string]float64{"liver": 0.5, "heart": 1, "Brain": 0.03239989}, "Brain 0.0324, heart 1.0000, liver 0.5000"},
	} {
		if got := FormatDice(c.dice); got != c.want {
			t.Errorf("FormatDice(%v) = %q, want %q", c.dice, got, c.want)
		}
	}
}

// Validation scores each class with only its largest component kept too,
// and the plan records the classes that scored better: here class 1, whose
// other components the reference labels as background, and not class 2,
// whose reference is the prediction itself.
func TestValidationChoosesLargestComponents(t *testing.T) {
	cfg := u2net.DefaultConfig()
	cfg.BaseChannels = 2
	cfg.PoolsPerAxis = [3]int{1, 2, 2}
	plan := preprocess.Plan{Version: preprocess.PlanVersion, Domain: "a", Modalities: []string{"MR"},
		TargetSpacing: [3]float64{1, 1, 1}, Normalization: []preprocess.ChannelNorm{{Scheme: preprocess.SchemeZScore}},
		Labels: []string{"background", "x", "y"}}
	pj, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Domains = []u2net.Domain{{Name: "a", InChannels: 1, Classes: 3, Plan: pj}}
	m, err := u2net.New(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	net, err := u2net.NewNet(m, ops.NewCPU())
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	shape := [4]int{1, 8, 16, 16}
	r := rand.New(rand.NewPCG(1, 3))
	c := &preprocess.Case{ID: "c", Shape: shape, Image: make([]float32, 8*16*16)}
	for i := range c.Image {
		c.Image[i] = float32(r.NormFloat64())
	}
	patch := [3]int{8, 16, 16}
	pred, err := Segment(context.Background(), net, 0, c, patch, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.Label = slices.Clone(pred)
	for _, k := range []uint8{1, 2} {
		if n, _ := predict.KeepLargestComponents(slices.Clone(pred), [3]int{8, 16, 16}, []uint8{k}); n == 0 {
			t.Fatalf("test set-up: the prediction has one component of class %d", k)
		}
	}
	if _, err := predict.KeepLargestComponents(c.Label, [3]int{8, 16, 16}, []uint8{1}); err != nil {
		t.Fatal(err)
	}
	run := &runner{opt: Options{Patch: patch, Batch: 1}, net: net, doms: []*domainData{{
		index: 0, ds: &dataset.Dataset{Name: "a", Labels: plan.Labels}, val: []*preprocess.Case{c}}}}
	dice, keep, err := run.validate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keep[0], []int{1}) || !(dice["a"] < 1) {
		t.Errorf("validation chose %v (mean Dice %v), want class 1 alone", keep, dice)
	}
	if err := run.setKeepLargest(keep); err != nil {
		t.Fatal(err)
	}
	got, err := predict.Plan(m.Config, 0)
	if err != nil || !slices.Equal(got.KeepLargest, []int{1}) {
		t.Errorf("plan records %v (%v), want [1]", got.KeepLargest, err)
	}
}

// TestHoldOut splits datasets of awkward sizes: the folds' validation cases
// cover every case exactly once, in sizes that differ by at most one, the
// rest train, both keep the dataset's order, and the same options give the
// same split.
func TestHoldOut(t *testing.T) {
	newDataset := func(n int) *dataset.Dataset {
		ds := &dataset.Dataset{Root: "/data/Task09_Spleen"}
		for i := range n {
			ds.Training = append(ds.Training, dataset.Case{ID: fmt.Sprintf("case_%02d", i)})
		}
		return ds
	}
	ids := func(cases []dataset.Case) []string {
		var out []string
		for _, c := range cases {
			out = append(out, c.ID)
		}
		return out
	}
	for _, c := range []struct{ n, folds int }{{2, 2}, {3, 2}, {5, 5}, {7, 3}, {10, 5}, {13, 4}, {41, 5}} {
		ds := newDataset(c.n)
		seen := map[string]int{}
		sizes := map[int]bool{}
		var first []string
		for fold := range c.folds {
			opt := Options{Folds: c.folds, Fold: fold, ValFraction: 0.5}
			tr, va, err := holdOut(ds, opt)
			if err != nil {
				t.Fatalf("%+v fold %d: %v", c, fold, err)
			}
			if len(tr)+len(va) != c.n {
				t.Fatalf("%+v fold %d: %d training + %d validation cases of %d", c, fold, len(tr), len(va), c.n)
			}
			if !slices.IsSorted(ids(tr)) || !slices.IsSorted(ids(va)) {
				t.Fatalf("%+v fold %d: split out of the dataset's order: %v, %v", c, fold, ids(tr), ids(va))
			}
			for _, id := range ids(va) {
				seen[id]++
				if slices.Contains(ids(tr), id) {
					t.Fatalf("%+v fold %d: %s both trains and validates", c, fold, id)
				}
			}
			sizes[len(va)] = true
			_, again, _ := holdOut(ds, opt)
			if !slices.Equal(ids(va), ids(again)) {
				t.Fatalf("%+v fold %d: the same options held out %v, then %v", c, fold, ids(va), ids(again))
			}
			if fold == 0 {
				first = ids(va)
			}
		}
		if len(seen) != c.n {
			t.Errorf("%+v: %d of %d cases validated in some fold", c, len(seen), c.n)
		}
		for id, k := range seen {
			if k != 1 {
				t.Errorf("%+v: %s validated in %d folds", c, id, k)
			}
		}
		lo, hi := c.n/c.folds, (c.n+c.folds-1)/c.folds
		for s := range sizes {
			if s != lo && s != hi {
				t.Errorf("%+v: a fold of %d cases, want %d or %d", c, s, lo, hi)
			}
		}
		if c.n >= 10 && slices.Equal(first, ids(ds.Training[:len(first)])) {
			t.Errorf("%+v: fold 0 is the first cases in order, not a shuffle", c)
		}
	}
	// Without folds: the last share of the cases, at least one of two.
	for _, c := range []struct {
		n        int
		fraction float64
		val      int
	}{{1, 0.2, 0}, {2, 0.2, 1}, {10, 0.2, 2}, {10, 0, 0}, {7, 0.34, 2}} {
		tr, va, err := holdOut(newDataset(c.n), Options{ValFraction: c.fraction})
		if err != nil || len(va) != c.val || len(tr) != c.n-c.val || (c.val > 0 && va[c.val-1].ID != fmt.Sprintf("case_%02d", c.n-1)) {
			t.Errorf("%d cases, fraction %g: training %v, validation %v, %v; want the last %d to validate", c.n, c.fraction, ids(tr), ids(va), err, c.val)
		}
	}
	if _, _, err := holdOut(newDataset(3), Options{Folds: 4, Fold: 0}); err == nil || !strings.Contains(err.Error(), "Task09_Spleen") || !strings.Contains(err.Error(), "3 training cases") {
		t.Errorf("4 folds of 3 cases: %v, want an error naming the dataset and its 3 cases", err)
	}
}

func TestFoldOptionsValidated(t *testing.T) {
	base := tinyOptions([]string{"d"}, "o")
	for _, c := range []struct {
		folds, fold int
		want        string
	}{{1, 0, "--folds 1"}, {-2, 0, "--folds -2"}, {5, 5, "--fold 5 out of range"}, {5, -1, "--fold -1 out of range"}, {0, 2, "--fold 2 needs --folds"}} {
		opt := base
		opt.Folds, opt.Fold = c.folds, c.fold
		if err := opt.validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("folds %d, fold %d: %v, want %q", c.folds, c.fold, err, c.want)
		}
	}
}

// A run on fold 1 of 3 trains on the other folds' cases and says which in
// its split file.
func TestRunWritesItsFold(t *testing.T) {
	data := synthData(t)
	opt := tinyOptions(data, filepath.Join(t.TempDir(), "run"))
	opt.Folds, opt.Fold, opt.StopAfter = 3, 1, 1
	if _, err := Run(context.Background(), opt, ops.NewCPU(), quiet, nil); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(opt.Out, SplitFile))
	if err != nil {
		t.Fatal(err)
	}
	var got []Split
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(data) {
		t.Fatalf("split file %s names %d domains, want %d", raw, len(got), len(data))
	}
	for i, dir := range data {
		ds, err := dataset.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		tr, va, err := holdOut(ds, opt)
		if err != nil {
			t.Fatal(err)
		}
		want := Split{Domain: ds.Name}
		for _, c := range tr {
			want.Training = append(want.Training, c.ID)
		}
		for _, c := range va {
			want.Validation = append(want.Validation, c.ID)
		}
		if !reflect.DeepEqual(got[i], want) {
			t.Errorf("split of %s: %+v, want %+v", ds.Name, got[i], want)
		}
	}
}

// A split file fixes the validation cases: a run's split.json by domain
// name, or the reference implementation's fold file by dataset folder and
// fold.
func TestHoldOutSplitFile(t *testing.T) {
	dir := t.TempDir()
	ds := &dataset.Dataset{Root: filepath.Join(dir, "Task02_Heart"), Name: "Heart"}
	for i := range 6 {
		ds.Training = append(ds.Training, dataset.Case{ID: fmt.Sprintf("la_%03d", i)})
	}
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o644)
		return p
	}
	ours := write("split.json", `[{"domain": "Liver", "validation": ["x"]}, {"domain": "Heart", "training": [], "validation": ["la_004", "la_001"]}]`)
	ref := write("fold_splits.json", `{"Task02_Heart": {"fold0": {"train": [], "val": ["la_000"]}, "fold1": {"train": [], "val": ["la_005", "la_002"]}}}`)
	for _, c := range []struct {
		split string
		fold  int
		val   []string
	}{
		{ours, 0, []string{"la_001", "la_004"}},
		{ref, 0, []string{"la_000"}},
		{ref, 1, []string{"la_002", "la_005"}},
	} {
		tr, va, err := holdOut(ds, Options{Split: c.split, Fold: c.fold})
		var got []string
		for _, v := range va {
			got = append(got, v.ID)
		}
		if err != nil || !slices.Equal(got, c.val) || len(tr)+len(va) != 6 {
			t.Errorf("%s fold %d: validation %v (%d training), %v; want %v", filepath.Base(c.split), c.fold, got, len(tr), err, c.val)
		}
	}
	other := &dataset.Dataset{Root: filepath.Join(dir, "Task05_Prostate"), Name: "Prostate", Training: ds.Training}
	for _, c := range []struct {
		ds    *dataset.Dataset
		split string
		fold  int
		want  string
	}{
		{other, ours, 0, "has no domain Prostate (it has Liver, Heart)"},
		{other, ref, 0, "has no dataset Task05_Prostate"},
		{ds, ref, 3, "has no fold3 for dataset Task02_Heart"},
		{ds, write("bad.json", `[{"domain": "Heart", "validation": ["la_009"]}]`), 0, "has no training case la_009"},
		{ds, write("junk.json", `"fold"`), 0, "neither a run's split.json nor a fold file"},
		{ds, filepath.Join(dir, "none.json"), 0, "none.json"},
	} {
		if _, _, err := holdOut(c.ds, Options{Split: c.split, Fold: c.fold}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s with %s fold %d: %v, want %q", c.ds.Name, filepath.Base(c.split), c.fold, err, c.want)
		}
	}
	if err := (&Options{Data: []string{"d"}, Out: "o", Epochs: 1, StepsPerEpoch: 1, Batch: 1, Split: ours, Folds: 5}).validate(); err == nil {
		t.Error("--split with --folds accepted")
	}
}

// The engine's kernel choices are recorded with the run: resuming under
// others warns, since they round differently.
func TestResumeNamesOtherKernels(t *testing.T) {
	opt := Options{Out: t.TempDir(), Kernels: []string{"norm=chunked"}}
	if err := WriteJSON(filepath.Join(opt.Out, OptionsFile), opt); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	same := opt
	resumeOptions(&same, log)
	if logs.Len() != 0 {
		t.Errorf("resuming under the run's kernel choices warned:\n%s", logs.String())
	}
	other := opt
	other.Kernels = nil
	resumeOptions(&other, log)
	if !strings.Contains(logs.String(), `changed=Kernels`) {
		t.Errorf("resuming under the engine's own rules: log\n%s\nwants a warning naming Kernels", logs.String())
	}
}
