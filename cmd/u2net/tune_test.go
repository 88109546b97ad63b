package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/u2net-vk/u2net/ops"
)

// The tests keep their device files (pipeline caches, kernel tunings) in a
// folder of their own: a tuning of the user's would change their kernels.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "u2net-cmd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("U2NET_CACHE_DIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// u2net tune writes a tuning that reads back, into --out (of the network
// of another mode) or by default into the device's tuning file.
func TestTuneCommand(t *testing.T) {
	t.Setenv("U2NET_CACHE_DIR", t.TempDir())
	out := filepath.Join(t.TempDir(), "tuning.json")
	tiny := []string{"tune", "--device", "0", "--size", "8", "--batch", "1", "--base-channels", "2", "--repeats", "1"}
	code, stdout, stderr := run(append(tiny, "--out", out, "--mode", "independent")...)
	if code != 0 {
		t.Fatalf("u2net tune: exit %d, stderr %q", code, stderr)
	}
	tu, err := ops.ReadKernelTuning(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tu.Setting, "the independent network at ") || !strings.Contains(tu.Setting, "8³") || len(tu.Results) < 2 ||
		!strings.HasPrefix(tu.Program, "u2net ") {
		t.Errorf("tuning at %q with %d results by %q, want 8³, every choice and the program", tu.Setting, len(tu.Results), tu.Program)
	}
	for _, s := range []string{"kernel tuning of", "for training: ", "wrote " + out} {
		if !strings.Contains(stdout, s) {
			t.Errorf("standard output lacks %q:\n%s", s, stdout)
		}
	}
	code, stdout, stderr = run(tiny...)
	g, closeGPU := openTestGPU(t)
	defer closeGPU()
	path := ops.KernelTuningPath(g)
	if _, err := ops.ReadKernelTuning(path); code != 0 || err != nil || !strings.Contains(stdout, "wrote "+path) {
		t.Errorf("u2net tune without --out: exit %d (%q), reading %s: %v", code, stderr, path, err)
	}
	// u2net devices shows it.
	code, stdout, stderr = run("devices", "--json")
	var rep devicesReport
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil {
		t.Fatalf("u2net devices --json: exit %d (%q), %v", code, stderr, err)
	}
	if tu := rep.Tunings[0]; tu.Status != "applied" || tu.File != path || tu.Tuned.IsZero() {
		t.Errorf("devices lists device 0's tuning as %+v, want %s applied", tu, path)
	}
	if _, stdout, _ = run("devices"); !strings.Contains(stdout, rep.Tunings[0].Tuned.Format(time.DateOnly)+": train ") {
		t.Errorf("the devices table does not date the tuning:\n%s", stdout)
	}
}

// openTestGPU opens Vulkan device 0.
func openTestGPU(t *testing.T) (*ops.GPU, func()) {
	t.Helper()
	e, err := openEngine("0", memoryLimitFlag{}, newLogger(os.Stderr))
	if err != nil {
		t.Fatal(err)
	}
	g, ok := e.(*ops.GPU)
	if !ok {
		e.Close()
		t.Fatalf("device 0 is %s, not a Vulkan device", e.Name())
	}
	return g, func() {
		if err := g.Close(); err != nil {
			t.Error(err)
		}
	}
}

// The engine takes the tuning's choices for its use, --kernel's over them;
// a tuning of another device or driver is refused when named and passed
// over, with a warning, when it is the device's own file.
func TestTuningApplied(t *testing.T) {
	t.Setenv("U2NET_CACHE_DIR", t.TempDir())
	g, closeGPU := openTestGPU(t)
	defer closeGPU()
	tu := ops.NewKernelTuning(g)
	tu.Train = []string{"norm=chunked"}
	tu.Predict = []string{"depthwise-stats=separate"}
	if err := ops.WriteKernelTuning(ops.KernelTuningPath(g), tu); err != nil {
		t.Fatal(err)
	}
	foreign := tu
	foreign.DriverVersion++
	foreignPath := filepath.Join(t.TempDir(), "foreign.json")
	if err := ops.WriteKernelTuning(foreignPath, foreign); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		flags []string
		use   tuningUse
		want  []string
		err   string // of apply
		log   string
	}{
		{"training", nil, forTraining, []string{"norm=chunked"}, "", "from=" + ops.KernelTuningPath(g)},
		{"prediction", nil, forPrediction, []string{"depthwise-stats=separate"}, "", `kernel="depthwise-stats=separate"`},
		{"--kernel over it", []string{"--kernel", "norm=fused", "--kernel", "direct=off"}, forTraining,
			[]string{"direct=off", "norm=fused"}, "", ""},
		{"off", []string{"--tuning", "off"}, forTraining, nil, "", ""},
		{"named, of another driver", []string{"--tuning", foreignPath}, forTraining, nil, "--tuning " + foreignPath + ": measured with driver version", ""},
	} {
		var logs bytes.Buffer
		fs := newFlagSet("test", "", &logs)
		k := addKernelFlag(fs)
		if err := fs.Parse(c.flags); err != nil {
			t.Fatal(err)
		}
		if err := k.check(); err != nil {
			t.Fatalf("%s: check: %v", c.name, err)
		}
		if err := g.SetKernel("depthwise-forward=stream"); err != nil { // which apply sets back
			t.Fatal(err)
		}
		err := k.apply(g, c.use, newLogger(&logs))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want an error with %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		} else if got := g.Kernels(); !slices.Equal(got, c.want) {
			t.Errorf("%s: choices %v, want %v", c.name, got, c.want)
		}
		if !strings.Contains(logs.String(), c.log) {
			t.Errorf("%s: the log lacks %q:\n%s", c.name, c.log, logs.String())
		}
	}

	// The device's own file, measured with another driver: a warning.
	if err := ops.WriteKernelTuning(ops.KernelTuningPath(g), foreign); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	k := addKernelFlag(newFlagSet("test", "", &logs))
	if err := k.apply(g, forTraining, newLogger(&logs)); err != nil || len(g.Kernels()) != 0 ||
		!strings.Contains(logs.String(), "the device's kernel tuning is not applied") {
		t.Errorf("a stale tuning file: %v, choices %v, log:\n%s", err, g.Kernels(), logs.String())
	}
	g.SetKernels(nil)
}

// A resumed run keeps the kernel choices it began with, whatever was tuned
// since, and continues exactly; --tuning chooses others, with a warning.
func TestResumeKeepsKernels(t *testing.T) {
	t.Setenv("U2NET_CACHE_DIR", t.TempDir())
	dir, data := synthData(t, 1)
	runDir := filepath.Join(dir, "run")
	args := []string{"train", "--data", filepath.Join(data, "SynthCT"), "--out", runDir, "--device", "0",
		"--steps-per-epoch", "1", "--patch", "8,8,8", "--batch", "1", "--base-channels", "2", "--val-every", "0"}
	if code, _, stderr := run(append(args, "--epochs", "1", "--kernel", "norm=chunked")...); code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr)
	}
	g, closeGPU := openTestGPU(t)
	tu := ops.NewKernelTuning(g)
	tu.Train = []string{"depthwise-stats=separate"}
	err := ops.WriteKernelTuning(ops.KernelTuningPath(g), tu)
	closeGPU()
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(append(args, "--epochs", "2", "--resume")...)
	if code != 0 || !strings.Contains(stderr, `kernel="norm=chunked" from="the run's options`) || strings.Contains(stderr, "WARN") {
		t.Errorf("train --resume: exit %d, want the run's kernel choices and no warning:\n%s", code, stderr)
	}
	code, _, stderr = run(append(args, "--epochs", "3", "--resume", "--tuning", "off")...)
	if code != 0 || !strings.Contains(stderr, "does not continue exactly") || !strings.Contains(stderr, "changed=Kernels") {
		t.Errorf("train --resume --tuning off: exit %d, want a warning naming Kernels:\n%s", code, stderr)
	}
}
