package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/u2net-vk/u2net/u2net"
	"github.com/u2net-vk/u2net/u2net/preprocess"
	"github.com/u2net-vk/u2net/vk"
)

// The user's path end to end on tiny synthetic data with the CPU engine:
// synth, train, resume, predict a folder, evaluate.
func TestTrainResumePredictEval(t *testing.T) {
	dir, data := synthData(t, 2)
	ct := filepath.Join(data, "SynthCT")
	runDir := filepath.Join(dir, "run")
	trainArgs := []string{"train", "--data", ct, "--out", runDir, "--device", "cpu", "--epochs", "2", "--steps-per-epoch", "1",
		"--patch", "16,16,16", "--batch", "1", "--base-channels", "2", "--val-every", "1", "--val-fraction", "0.34"}
	if code, _, stderr := run(trainArgs...); code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr)
	}
	for _, f := range []string{"model.safetensors", "checkpoint.safetensors", "metrics.jsonl", "progress.png", "train.log", "options.json"} {
		if _, err := os.Stat(filepath.Join(runDir, f)); err != nil {
			t.Errorf("run folder lacks %s", f)
		}
	}
	// A finished run resumes to no further steps; a second fresh run into
	// the same folder is refused.
	if code, _, stderr := run(append(trainArgs, "--resume")...); code != 0 {
		t.Fatalf("train --resume: exit %d: %s", code, stderr)
	}
	if code, _, stderr := run(trainArgs...); code != 1 || !strings.Contains(stderr, "--resume") {
		t.Errorf("second train into the same folder: exit %d: %s", code, stderr)
	}

	model := filepath.Join(runDir, "model.safetensors")
	pred := filepath.Join(dir, "pred")
	code, stdout, stderr := run("predict", "--model", model, "--domain", "SynthCT", "--input", filepath.Join(ct, "imagesTs"),
		"--output", pred, "--device", "cpu")
	if code != 0 {
		t.Fatalf("predict: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "->") || !strings.Contains(stdout, "): organ_a ") || !strings.Contains(stdout, " mL, organ_b ") {
		t.Errorf("predict output (want each class's volume): %s", stdout)
	}
	one, _ := filepath.Glob(filepath.Join(ct, "imagesTs", "*.nii.gz"))
	if len(one) == 0 {
		t.Fatal("synth wrote no test images")
	}
	if code, _, stderr := run("predict", "--model", model, "--domain", "SynthCT", "--input", one[0],
		"--output", filepath.Join(dir, "one.nii.gz"), "--probabilities", filepath.Join(dir, "probs.nii.gz"),
		"--preview", filepath.Join(dir, "preview.png"), "--device", "cpu"); code != 0 {
		t.Fatalf("predict one file: %s", stderr)
	}
	for _, f := range []string{"one.nii.gz", "probs.nii.gz", "preview.png"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("predict did not write %s", f)
		}
	}
	// Kernel choices reach a Vulkan device, and the log names them.
	if code, _, stderr := run("predict", "--model", model, "--domain", "SynthCT", "--input", one[0],
		"--output", filepath.Join(dir, "kernels.nii.gz"), "--device", "0", "--kernel", "depthwise-stats=separate",
		"--kernel", "norm=chunked"); code != 0 || !strings.Contains(stderr, `kernel="depthwise-stats=separate,norm=chunked"`) {
		t.Errorf("predict --kernel: exit %d: %s", code, stderr)
	}
	if code, stdout, stderr := run("eval", "--pred", pred, "--ref", filepath.Join(ct, "labelsTs")); code != 0 || !strings.Contains(stdout, "mean") {
		t.Errorf("eval: exit %d: %s %s", code, stdout, stderr)
	}
	// Islands removed from chosen classes, by value or by name.
	for _, classes := range []string{"all", "organ_b,1"} {
		if code, _, stderr := run("predict", "--model", model, "--domain", "SynthCT", "--input", one[0],
			"--output", filepath.Join(dir, "largest.nii.gz"), "--largest-component", classes, "--device", "cpu"); code != 0 {
			t.Errorf("predict --largest-component %s: exit %d: %s", classes, code, stderr)
		}
	}
	// An ensemble: the model and the run's checkpoint, averaged.
	ckptModel := filepath.Join(runDir, "checkpoint.safetensors")
	if code, stdout, stderr := run("predict", "--model", model, "--model", ckptModel, "--domain", "SynthCT", "--input", one[0],
		"--output", filepath.Join(dir, "ensemble.nii.gz"), "--device", "cpu"); code != 0 || !strings.Contains(stdout, "2 models") {
		t.Errorf("predict with two models: exit %d: %s %s", code, stdout, stderr)
	}
	// A model whose SynthCT has other classes cannot join it.
	m, err := u2net.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.Config
	cfg.Domains = []u2net.Domain{{Name: "SynthCT", InChannels: 1, Classes: 2}}
	otherPath := newModelFile(t, cfg, filepath.Join(dir, "two-classes.safetensors"))
	// Nor one whose SynthCT takes other channels.
	cfg.Domains = []u2net.Domain{{Name: "SynthCT", InChannels: 2, Classes: 3}}
	twoChannelsPath := newModelFile(t, cfg, filepath.Join(dir, "two-channels.safetensors"))
	// Nor one whose plan names the classes otherwise.
	var plan preprocess.Plan
	if err := json.Unmarshal(m.Config.Domains[0].Plan, &plan); err != nil {
		t.Fatal(err)
	}
	plan.Labels = []string{"background", "organ_b", "organ_a"}
	if m.Config.Domains[0].Plan, err = json.Marshal(plan); err != nil {
		t.Fatal(err)
	}
	renamedPath := filepath.Join(dir, "renamed.safetensors")
	if err := m.Save(renamedPath); err != nil {
		t.Fatal(err)
	}

	// A plan that keeps the largest component of organ_a: predict does so
	// by default, as --largest-component 1 does with the model, and not
	// with --largest-component none; info says so.
	plan.Labels = []string{"background", "organ_a", "organ_b"}
	plan.KeepLargest = []int{1}
	if m.Config.Domains[0].Plan, err = json.Marshal(plan); err != nil {
		t.Fatal(err)
	}
	plannedPath := filepath.Join(dir, "planned.safetensors")
	if err := m.Save(plannedPath); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := run("info", plannedPath); code != 0 || !strings.Contains(stdout, "largest component of organ_a") {
		t.Errorf("info of a plan keeping a largest component: exit %d: %s %s", code, stdout, stderr)
	}
	outputs := map[string]string{}
	for _, c := range []struct {
		name, model, flag string
		logs              bool
	}{
		{"planned", plannedPath, "", true},
		{"flag", model, "1", false},
		{"none", plannedPath, "none", false},
		{"plain", model, "", false},
	} {
		out := filepath.Join(dir, "keep-"+c.name+".nii.gz")
		args := []string{"predict", "--model", c.model, "--domain", "SynthCT", "--input", one[0], "--output", out, "--device", "cpu"}
		if c.flag != "" {
			args = append(args, "--largest-component", c.flag)
		}
		code, _, stderr := run(args...)
		if code != 0 || strings.Contains(stderr, "keeping only the largest") != c.logs {
			t.Errorf("predict (%s): exit %d, stderr %s", c.name, code, stderr)
		}
		b, _ := os.ReadFile(out)
		outputs[c.name] = string(b)
	}
	if outputs["planned"] != outputs["flag"] || outputs["none"] != outputs["plain"] || outputs["planned"] == outputs["plain"] {
		t.Error("the plan's largest components are not those of --largest-component, none does not turn them off, or they change nothing")
	}

	// Under a memory limit too small for the window asked for, predict on
	// a Vulkan device uses a smaller window and says so.
	if devs, err := vk.Devices(); (err == nil && len(devs) > 0) || vk.RequireGPU() {
		code, _, stderr := run("predict", "--model", model, "--domain", "SynthCT", "--input", one[0],
			"--output", filepath.Join(dir, "limited.nii.gz"), "--patch", "64", "--memory-limit", "3MiB")
		if code != 0 || !strings.Contains(stderr, "fitted_window") {
			t.Errorf("predict under a memory limit: exit %d: %s", code, stderr)
		}
		// Training that does not fit says what to change.
		code, _, stderr = run("train", "--data", ct, "--out", filepath.Join(dir, "limited"), "--epochs", "1", "--steps-per-epoch", "1",
			"--patch", "32", "--batch", "1", "--base-channels", "2", "--val-every", "0", "--memory-limit", "2MiB")
		if code != 1 || !strings.Contains(stderr, "a smaller --patch or --batch") {
			t.Errorf("train under a memory limit: exit %d: %s", code, stderr)
		}
	}

	// Errors a user meets.
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"predict", "--model", model, "--domain", "Liver", "--input", one[0], "--output", filepath.Join(dir, "x.nii.gz"), "--device", "cpu"}, 1, `unknown domain "Liver"`},
		{[]string{"predict", "--model", filepath.Join(dir, "nope.safetensors"), "--domain", "SynthCT", "--input", one[0], "--output", filepath.Join(dir, "x.nii.gz")}, 1, "nope.safetensors"},
		{[]string{"predict", "--model", model, "--domain", "SynthCT", "--input", one[0], "--output", filepath.Join(dir, "no", "such", "x.nii.gz"), "--device", "cpu"}, 1, "--output"},
		{[]string{"predict", "--model", model, "--domain", "SynthCT", "--input", filepath.Join(data, "SynthMR", "imagesTs"), "--output", filepath.Join(dir, "mr"), "--device", "cpu"}, 1, "channel"},
		{[]string{"predict", "--model", model, "--domain", "SynthCT", "--input", one[0], "--output", filepath.Join(dir, "x.nii.gz"), "--memory-limit", "lots"}, 2, "-memory-limit"},
		{[]string{"predict", "--model", model, "--domain", "SynthCT", "--input", one[0], "--output", filepath.Join(dir, "x.nii.gz"), "--largest-component", "liver"}, 2,
			`"liver" is not a class (want all, or names organ_a, organ_b or values 1..2)`},
		{[]string{"predict", "--model", model, "--domain", "SynthCT", "--input", one[0], "--output", filepath.Join(dir, "x.nii.gz"), "--largest-component", "3"}, 2,
			"class 3: the domain's foreground classes are 1..2"},
		{[]string{"predict", "--model", model, "--model", otherPath, "--domain", "SynthCT", "--input", one[0], "--output", filepath.Join(dir, "x.nii.gz"), "--device", "cpu"}, 1,
			"domain SynthCT has 2 classes in " + otherPath + " but 3 in " + model},
		{[]string{"predict", "--model", model, "--model", twoChannelsPath, "--domain", "SynthCT", "--input", one[0], "--output", filepath.Join(dir, "x.nii.gz"), "--device", "cpu"}, 1,
			"domain SynthCT takes 2 channel(s) in " + twoChannelsPath + " but 1 in " + model},
		{[]string{"predict", "--model", model, "--model", renamedPath, "--domain", "SynthCT", "--input", one[0], "--output", filepath.Join(dir, "x.nii.gz"), "--device", "cpu"}, 1,
			`labels ["background" "organ_b" "organ_a"] in ` + renamedPath},
		{[]string{"train", "--out", filepath.Join(dir, "r2")}, 2, "--data"},
		{[]string{"train", "--data", ct, "--out", filepath.Join(dir, "r3"), "--patch", "15,16,16", "--pools", "2,2,2", "--device", "cpu"}, 1, "--patch"},
		{[]string{"train", "--data", filepath.Join(dir, "missing"), "--out", filepath.Join(dir, "r4"), "--device", "cpu"}, 1, "missing"},
	}
	for _, c := range cases {
		code, _, stderr := run(c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("u2net %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), code, stderr, c.code, c.want)
		}
	}
	// A truncated checkpoint is refused with its name.
	ckpt := filepath.Join(runDir, "checkpoint.safetensors")
	b, _ := os.ReadFile(ckpt)
	os.WriteFile(ckpt, b[:len(b)/3], 0o644)
	if code, _, stderr := run(append(trainArgs, "--resume")...); code != 1 || !strings.Contains(stderr, "checkpoint.safetensors") {
		t.Errorf("resume from a truncated checkpoint: exit %d: %s", code, stderr)
	}
}

// synthData writes tiny synthetic domains (3 training cases and 1 test case
// each, 16³) into a new temporary folder dir, under data.
func synthData(t *testing.T, seed int) (dir, data string) {
	t.Helper()
	dir = t.TempDir()
	data = filepath.Join(dir, "data")
	if code, _, stderr := run("synth", "--out", data, "--seed", fmt.Sprint(seed), "--cases", "3", "--test-cases", "1", "--size", "16"); code != 0 {
		t.Fatalf("synth: %s", stderr)
	}
	return dir, data
}

// newModelFile saves a new model of cfg at path and returns path.
func newModelFile(t *testing.T, cfg u2net.Config, path string) string {
	t.Helper()
	m, err := u2net.New(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// Cross-validation end to end: a model per fold, each predicting the cases
// its fold held out into one folder, which then covers every training case
// for eval against labelsTr.
func TestCrossValidation(t *testing.T) {
	dir, data := synthData(t, 3)
	ct := filepath.Join(data, "SynthCT")
	cv, cache := filepath.Join(dir, "cv"), filepath.Join(dir, "cache")
	const folds = 3
	// The folds share one preprocessing cache: the first fills it, the
	// others only read it.
	cached := func() map[string]time.Time {
		files, _ := filepath.Glob(filepath.Join(cache, "SynthCT", "*"))
		out := map[string]time.Time{}
		for _, f := range files {
			if st, err := os.Stat(f); err == nil {
				out[f] = st.ModTime()
			}
		}
		return out
	}
	var first map[string]time.Time
	for fold := range folds {
		runDir := filepath.Join(dir, fmt.Sprint("fold", fold))
		if code, _, stderr := run("train", "--data", ct, "--out", runDir, "--device", "cpu", "--epochs", "1", "--steps-per-epoch", "1",
			"--patch", "16,16,16", "--batch", "1", "--base-channels", "2", "--folds", fmt.Sprint(folds), "--fold", fmt.Sprint(fold), "--cache", cache); code != 0 {
			t.Fatalf("train fold %d: exit %d: %s", fold, code, stderr)
		}
		if fold == 0 {
			first = cached()
			if len(first) != 1+3 {
				t.Fatalf("shared cache after fold 0: %v, want a plan and 3 cases", first)
			}
		} else if !reflect.DeepEqual(cached(), first) {
			t.Fatalf("fold %d changed the shared cache: %v, was %v", fold, cached(), first)
		}
		if _, err := os.Stat(filepath.Join(runDir, "cache")); err == nil {
			t.Errorf("fold %d made a cache of its own beside --cache", fold)
		}
		code, stdout, stderr := run("predict", "--model", filepath.Join(runDir, "model.safetensors"), "--domain", "SynthCT",
			"--input", filepath.Join(ct, "imagesTr"), "--split", filepath.Join(runDir, "split.json"), "--output", cv, "--device", "cpu")
		if code != 0 || strings.Count(stdout, " -> ") != 1 {
			t.Fatalf("predict fold %d: exit %d (want one case of three): %s %s", fold, code, stdout, stderr)
		}
	}
	if code, stdout, stderr := run("eval", "--pred", cv, "--ref", filepath.Join(ct, "labelsTr")); code != 0 || !strings.Contains(stdout, "mean") {
		t.Errorf("eval of the folds' predictions: exit %d: %s %s", code, stdout, stderr)
	}
	// A run given fold 1's split file holds out the same cases.
	again := filepath.Join(dir, "again")
	if code, _, stderr := run("train", "--data", ct, "--out", again, "--device", "cpu", "--epochs", "1", "--steps-per-epoch", "1",
		"--patch", "16,16,16", "--batch", "1", "--base-channels", "2", "--split", filepath.Join(dir, "fold1", "split.json"), "--cache", cache); code != 0 {
		t.Fatalf("train --split: exit %d: %s", code, stderr)
	}
	want, _ := os.ReadFile(filepath.Join(dir, "fold1", "split.json"))
	if got, _ := os.ReadFile(filepath.Join(again, "split.json")); string(got) != string(want) {
		t.Errorf("train --split fold1/split.json held out\n%s\nwant\n%s", got, want)
	}

	// A fold file of the reference implementation: datasets by folder name.
	refFolds := filepath.Join(dir, "fold_splits.json")
	os.WriteFile(refFolds, []byte(`{"SynthCT": {"fold2": {"train": ["synthct_000"], "val": ["synthct_001"]}}}`), 0o644)
	refOut := filepath.Join(dir, "refcv")
	if code, stdout, stderr := run("predict", "--model", filepath.Join(dir, "fold0", "model.safetensors"), "--domain", "SynthCT",
		"--input", filepath.Join(ct, "imagesTr"), "--split", refFolds, "--fold", "2", "--output", refOut, "--device", "cpu"); code != 0 || strings.Count(stdout, " -> ") != 1 || !strings.Contains(stdout, "synthct_001") {
		t.Errorf("predict with a reference fold file: exit %d: %s %s", code, stdout, stderr)
	}
	split := filepath.Join(dir, "fold0", "split.json")
	other := filepath.Join(dir, "other.json")
	os.WriteFile(other, []byte(`[{"domain": "SynthCT", "training": ["a"], "validation": ["synthct_001", "nosuch_case"]}]`), 0o644)
	mr := filepath.Join(dir, "mr.json")
	os.WriteFile(mr, []byte(`[{"domain": "SynthMR", "training": ["a"], "validation": ["b"]}, {"domain": "SynthVessel"}]`), 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--domain", "SynthCT", "--split", mr}, 1, "has no domain SynthCT (it has SynthMR, SynthVessel)"},
		{[]string{"--domain", "SynthCT", "--split", split, "--input", filepath.Join(ct, "imagesTr", "synthct_001.nii.gz"), "--output", filepath.Join(dir, "x.nii.gz")}, 2, "--split picks cases from a folder"},
		{[]string{"--domain", "SynthCT", "--split", filepath.Join(dir, "none.json")}, 1, "none.json"},
		{[]string{"--domain", "SynthCT", "--split", other}, 1, "lacks the validation case(s) nosuch_case of --split"},
	} {
		args := append([]string{"predict", "--model", filepath.Join(dir, "fold0", "model.safetensors"), "--input", filepath.Join(ct, "imagesTr"),
			"--output", filepath.Join(dir, "x"), "--device", "cpu"}, c.args...)
		if code, _, stderr := run(args...); code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("u2net %s: exit %d, stderr %q; want exit %d and %q", strings.Join(args, " "), code, stderr, c.code, c.want)
		}
	}
}
