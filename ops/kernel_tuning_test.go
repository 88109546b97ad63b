package ops

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops/ref"
)

// A tuning file keeps what was written, names itself in its errors, and
// fits only the device and driver it was measured with.
func TestKernelTuningFile(t *testing.T) {
	g := gpuEngine(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "kernels.json")
	tu := NewKernelTuning(g)
	tu.Setting = "1 domain(s), 8³"
	tu.Train = []string{"norm=chunked"}
	tu.Predict = []string{"depthwise-stats=separate", "direct=off"}
	tu.Results = []KernelTuningResult{{StepGPUMS: 2, ForwardGPUMS: 1}, {Choices: tu.Train, StepGPUMS: 1.5, ForwardGPUMS: 1.1, Again: true}}
	if err := WriteKernelTuning(path, tu); err != nil {
		t.Fatalf("WriteKernelTuning: %v", err)
	}
	got, err := ReadKernelTuning(path)
	if err != nil {
		t.Fatalf("ReadKernelTuning: %v", err)
	}
	if !got.Measured.Equal(tu.Measured) || !slices.Equal(got.Predict, tu.Predict) || got.Setting != tu.Setting ||
		len(got.Results) != 2 || !got.Results[1].Again || got.Results[1].StepGPUMS != 1.5 {
		t.Errorf("read back %+v, wrote %+v", got, tu)
	}
	if err := got.Fits(g.Device().Info()); err != nil {
		t.Errorf("Fits on the device it was measured on: %v", err)
	}
	other := got
	other.DriverVersion++
	if err := other.Fits(g.Device().Info()); err == nil || !strings.Contains(err.Error(), "driver version") {
		t.Errorf("Fits with another driver: %v, want an error naming the driver version", err)
	}
	other = got
	other.DeviceID++
	if err := other.Fits(g.Device().Info()); err == nil || !strings.Contains(err.Error(), "measured on") {
		t.Errorf("Fits on another device: %v, want an error naming the device", err)
	}
	if p := KernelTuningPath(g); p != "" && filepath.Dir(p) != g.Device().CacheDir() {
		t.Errorf("KernelTuningPath %q is not in the device's cache folder %q", p, g.Device().CacheDir())
	}

	if _, err := ReadKernelTuning(filepath.Join(dir, "none.json")); !errors.Is(err, ErrNoKernelTuning) {
		t.Errorf("a missing file: %v, want ErrNoKernelTuning", err)
	}
	for _, c := range []struct{ name, data, want string }{
		{"torn.json", `{"train": [`, "not a kernel tuning"},
		{"bad.json", `{"train": ["norm=sometimes"]}`, "kernel choice norm takes auto, fused, chunked"},
		{"unknown.json", `{"predict": ["warp=9"]}`, `kernel choice "warp=9" is not NAME=VALUE`},
	} {
		p := filepath.Join(dir, c.name)
		if err := os.WriteFile(p, []byte(c.data), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadKernelTuning(p)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming the file and %q", c.name, err, c.want)
		}
	}
}

// SetKernels sets exactly the choices given, the others back to auto, and
// leaves them as they were when one is wrong.
func TestSetKernels(t *testing.T) {
	g := gpuEngine(t)
	defer g.SetKernels(nil)
	if err := g.SetKernel("direct=off"); err != nil {
		t.Fatal(err)
	}
	want := []string{"depthwise-stats=separate", "norm=chunked"}
	if err := g.SetKernels(want); err != nil {
		t.Fatalf("SetKernels: %v", err)
	}
	if got := g.Kernels(); !slices.Equal(got, want) {
		t.Errorf("Kernels() = %v, want %v (direct back to auto)", got, want)
	}
	if g.directOn != nil {
		t.Error("direct is still overridden")
	}
	if err := g.SetKernels([]string{"norm=fused", "norm=often"}); err == nil || !strings.Contains(err.Error(), "norm=often") &&
		!strings.Contains(err.Error(), `"often"`) {
		t.Errorf("SetKernels with a wrong choice: %v", err)
	}
	if got := g.Kernels(); !slices.Equal(got, want) {
		t.Errorf("after a wrong choice Kernels() = %v, want them as they were, %v", got, want)
	}
	if err := g.SetKernels(nil); err != nil || len(g.Kernels()) != 0 {
		t.Errorf("SetKernels(nil): %v, Kernels() = %v, want none", err, g.Kernels())
	}
}

// RecordedDispatches tells work that records the same dispatches from work
// that does not: a depthwise convolution, recorded twice under the rules,
// under a value that is the rule itself, under the direct kernel and under
// the tiles; and it passes fn's error on.
func TestRecordedDispatches(t *testing.T) {
	g := gpuEngine(t)
	defer g.SetKernels(nil)
	p := ref.DepthwiseParams{N: 1, C: 3, Size: d3(5, 6, 8), Kernel: 3}
	r := rand.New(rand.NewPCG(61, 62))
	alloc := allocator(t, g)
	x, w, y := alloc(p.InputLen()), alloc(p.WeightLen()), alloc(p.OutputLen())
	if err := g.Write(x, randn(r, p.InputLen())); err != nil {
		t.Fatal(err)
	}
	if err := g.Write(w, randn(r, p.WeightLen())); err != nil {
		t.Fatal(err)
	}
	under := func(choices ...string) uint64 {
		t.Helper()
		if err := g.SetKernels(choices); err != nil {
			t.Fatal(err)
		}
		fp, err := g.RecordedDispatches(func() error {
			if err := g.DepthwiseConv3d(p, x, w, nil, y); err != nil {
				return err
			}
			return g.Sync()
		})
		if err != nil {
			t.Fatal(err)
		}
		return fp
	}
	rules := under()
	own := "device-class=gpu"
	if g.cpuTuned() {
		own = "device-class=cpu"
	}
	if again, same := under(), under(own); again != rules || same != rules {
		t.Errorf("the rules recorded %x, then %x, and %s %x: want one fingerprint", rules, again, own, same)
	}
	if direct, tiles := under("direct=on"), under("direct=off", "device-class=gpu"); direct == tiles {
		t.Errorf("the direct kernel and the tiles recorded the same dispatches (%x)", direct)
	}
	want := errors.New("device lost")
	if _, err := g.RecordedDispatches(func() error { return want }); err != want {
		t.Errorf("fn's error came back as %v", err)
	}
}
