package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/vk"
)

func run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = runMain(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string // in stderr
	}{
		{nil, 2, "usage: u2net"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"devices", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"devices", "extra"}, 2, "unexpected arguments: extra"},
		{[]string{"version", "--x"}, 2, "flag provided but not defined"},
		{[]string{"train", "--data", "d", "--out", "o", "--folds", "5", "--val-fraction", "0.1"}, 2, "--val-fraction and --folds or --split both choose"},
		{[]string{"train", "--data", "d", "--out", "o", "--workers", "-1"}, 2, "--workers -1"},
		{[]string{"train", "--data", "d", "--out", "o", "--kernel", "direct=sometimes"}, 2, "--kernel: kernel choice direct takes auto, on, off"},
		{[]string{"predict", "--model", "m", "--kernel", "fast"}, 2, "--kernel: kernel choice \"fast\" is not NAME=VALUE"},
		{[]string{"bench", "--repeats", "-2"}, 2, "--repeats -2: want a positive count"},
		{[]string{"bench", "--sections", "levels,foo"}, 2, `--sections: unknown section "foo"`},
		{[]string{"bench", "--shape", "1,2,3"}, 2, "want N,C,D,H,W"},
		{[]string{"bench", "--kernel", "depthwise"}, 2, "--kernel: kernel choice \"depthwise\" is not NAME=VALUE"},
		{[]string{"bench", "--kernel", "norm=often"}, 2, "--kernel: kernel choice norm takes auto, fused, chunked"},
		{[]string{"predict", "--model", "m", "--tuning", "/no-such-folder/t.json"}, 2, "--tuning: /no-such-folder/t.json: no tuning"},
		{[]string{"tune", "--size", "4"}, 2, "--size 4: want 8 or more"},
		{[]string{"tune", "--mode", "dense"}, 2, `--mode "dense": want universal, shared or independent`},
		{[]string{"tune", "--batch", "-1"}, 2, "--batch -1: want 1 or more"},
		{[]string{"tune", "--out", "/no-such-folder/t.json"}, 1, "--out: folder /no-such-folder"},
		{[]string{"tune", "--device", "cpu"}, 1, "tuning needs a Vulkan device"},
		// Output folders are checked before anything is measured.
		{[]string{"bench", "--json", "/no-such-folder/b.json"}, 1, "--json: folder /no-such-folder"},
		{[]string{"bench", "--png", "/no-such-folder/b.png"}, 1, "--png: folder /no-such-folder"},
	}
	for _, c := range cases {
		code, _, stderr := run(c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("u2net %v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}
	if code, stdout, _ := run("help"); code != 0 || !strings.Contains(stdout, "devices") {
		t.Errorf("u2net help: exit %d, stdout %q", code, stdout)
	}
	if code, _, stderr := run("devices", "-h"); code != 0 || !strings.Contains(stderr, "-json") {
		t.Errorf("u2net devices -h: exit %d, stderr %q", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := run("version")
	if code != 0 || !strings.HasPrefix(stdout, "u2net ") {
		t.Fatalf("u2net version: exit %d, %q", code, stdout)
	}
}

func TestDevicesListsCPUEngineAndVulkan(t *testing.T) {
	code, stdout, stderr := run("devices")
	if code != 0 {
		t.Fatalf("u2net devices: exit %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, "plain-Go reference engine") {
		t.Errorf("table lacks the CPU engine:\n%s", stdout)
	}
	code, stdout, stderr = run("devices", "--json")
	if code != 0 {
		t.Fatalf("u2net devices --json: exit %d, stderr %q", code, stderr)
	}
	var rep devicesReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("devices --json is not JSON: %v\n%s", err, stdout)
	}
	if rep.CPU.Selector != "cpu" {
		t.Errorf("cpu engine selector %q", rep.CPU.Selector)
	}
	if len(rep.Devices) == 0 {
		if vk.RequireGPU() {
			t.Fatalf("no Vulkan device listed: %s", rep.VulkanError)
		}
		t.Skipf("no Vulkan device: %s", rep.VulkanError)
	}
	if len(rep.Tunings) != len(rep.Devices) || !strings.Contains(stdout, "kernel_tunings") {
		t.Errorf("%d kernel tunings for %d devices", len(rep.Tunings), len(rep.Devices))
	}
	for _, d := range rep.Devices {
		if d.Name == "" || d.MaxStorageBufferRange == 0 || d.SubgroupSize == 0 || d.API == "" {
			t.Errorf("device entry lacks properties: %+v", d)
		}
		if !strings.Contains(stdout, d.Name) {
			t.Errorf("device %q missing from output", d.Name)
		}
	}
}

// --kernel choices reach the Vulkan device and its report, text and JSON.
func TestBenchKernelChoices(t *testing.T) {
	code, stdout, stderr := run("bench", "--device", "0", "--sections", "levels", "--shape", "1,2,4,4,4",
		"--repeats", "1", "--kernel", "direct=off", "--kernel", "norm=chunked", "--json", "-")
	if code != 0 {
		t.Fatalf("u2net bench --kernel: exit %d, stderr %q", code, stderr)
	}
	var reps []struct {
		Kernels []string `json:"kernels"`
	}
	if err := json.Unmarshal([]byte(stdout), &reps); err != nil {
		t.Fatalf("standard output is not JSON alone: %v\n%s", err, stdout)
	}
	if want := []string{"direct=off", "norm=chunked"}; len(reps) != 1 || !slices.Equal(reps[0].Kernels, want) {
		t.Errorf("JSON kernels %+v, want one engine's %v", reps, want)
	}
	if !strings.Contains(stderr, "kernel choices: direct=off, norm=chunked") {
		t.Errorf("the tables do not name the kernel choices:\n%s", stderr)
	}
}

// With --json -, standard output holds the JSON alone (the tables go to
// standard error), so that it can be piped.
func TestBenchJSONToStdout(t *testing.T) {
	code, stdout, stderr := run("bench", "--device", "cpu", "--sections", "levels", "--shape", "1,1,3,3,3",
		"--repeats", "1", "--json", "-")
	if code != 0 {
		t.Fatalf("u2net bench --json -: exit %d, stderr %q", code, stderr)
	}
	var reps []struct {
		Engine string `json:"engine"`
		Ops    []struct {
			Op string `json:"op"`
		} `json:"ops"`
	}
	if err := json.Unmarshal([]byte(stdout), &reps); err != nil {
		t.Fatalf("standard output is not JSON alone: %v\n%s", err, stdout)
	}
	if len(reps) != 1 || len(reps[0].Ops) == 0 {
		t.Errorf("JSON holds %+v, want one engine's operations", reps)
	}
	if !strings.Contains(stderr, "depthwise3") {
		t.Errorf("the tables are not on standard error:\n%s", stderr)
	}
}
