package u2net

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio"
	"github.com/nlpodyssey/safetensors"

	"github.com/u2net-vk/u2net/ops"
)

// The whole network against PyTorch 1.13 through the fixtures in
// testdata/model, made by testdata/model/make_fixtures.py: an independent
// PyTorch definition of DESIGN §4 from PyTorch's own layers, computed in
// float64 on float32 parameters and inputs, with the parameters named by
// this package's scheme.
//
// The CPU engine stores every activation and gradient in float32 (each op
// accumulates in float64), so each of the network's ~40 layers adds a
// relative rounding of ~6e-8 to its output. Forward, the instance norms keep
// every activation at unit scale and the errors add up to ~1e-6 in the
// logits (1.5e-6 at worst is seen) and ~1e-7 in the losses.
//
// Backward, a few gradients are ill-conditioned in float32: the scales of
// the first level's norms in the universal case (enc0.u1.dwnorm.ct.weight)
// get relative errors of a few 1e-4 from float32 activations. That is the float32 precision of
// the quantity, not of the engine: PyTorch itself, running the same case in
// float32, is 5.8e-4 off its float64 gradient there (the CPU engine 2.2e-4).
// Each gradient tensor is therefore held to 1e-3. All the gradients of a
// domain together are held to 1e-4: the largest ones (the first level's
// convs) carry the same cancellation, and PyTorch in float32 is 5.8e-5 off
// there (the CPU engine 2.5e-5; the other five domains of the fixtures are
// within 2.1e-6). A wiring fault gives errors of order 1: "same" padding of
// the strided convs put before instead of after gives 0.4 to 0.8 in the
// logits and above 1 in the gradients.
const (
	torchLogitsTol  = 1e-5 // relative L2 error of the logits
	torchLossTol    = 1e-5 // relative error of each loss
	torchGradTol    = 1e-3 // relative L2 error of each parameter gradient
	torchAllGradTol = 1e-4 // relative L2 error of a domain's gradients together
	// A conv bias directly followed by an instance norm shifts the mean the
	// norm subtracts, so its true gradient is exactly zero; PyTorch's
	// float64 gradient is then ~1e-17, and the CPU engine's is the float32
	// rounding of a sum of the norm's input gradient over N·D·H·W voxels
	// that cancels: up to 5e-7 is seen, against gradient norms of 1.4e-4
	// to 13 elsewhere. Such gradients are held to an absolute L2 floor.
	torchZeroGradFloor = 1e-5
	// torchZeroGradWant marks a PyTorch gradient as zero by construction.
	torchZeroGradWant = 1e-12
)

// torchCases are the case folders of testdata/model.
var torchCases = []string{"universal_transpose", "shared_nearest", "independent_plain"}

func torchFixtureDir() string { return filepath.Join("..", "testdata", "model") }

// npyArray is one array of a fixture: its shape and values.
type npyArray struct {
	shape []int
	f     []float64 // float arrays
	i     []int32   // int32 arrays
}

func readNPY(t *testing.T, path string) npyArray {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatalf("fixture missing (run testdata/model/make_fixtures.py): %v", err)
	}
	defer file.Close()
	r, err := npyio.NewReader(file)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	a := npyArray{shape: slices.Clone(r.Header.Descr.Shape)}
	switch typ := r.Header.Descr.Type; {
	case strings.Contains(typ, "f4"):
		var v []float32
		err = r.Read(&v)
		a.f = make([]float64, len(v))
		for k, x := range v {
			a.f[k] = float64(x)
		}
	case strings.Contains(typ, "f8"):
		err = r.Read(&a.f)
	case strings.Contains(typ, "i4"):
		err = r.Read(&a.i)
	default:
		t.Fatalf("%s: unexpected element type %s", path, typ)
	}
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return a
}

func (a npyArray) float32s() []float32 {
	v := make([]float32, len(a.f))
	for k, x := range a.f {
		v[k] = float32(x)
	}
	return v
}

// npyNames lists the array names (file names without .npy) of a folder.
func npyNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("fixture missing (run testdata/model/make_fixtures.py): %v", err)
	}
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".npy"); ok && !e.IsDir() {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// relL2of64 returns ‖got − want‖ / ‖want‖ with want in float64.
func relL2of64(got []float32, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var d, n float64
	for k := range got {
		g := float64(got[k])
		if math.IsNaN(g) || math.IsInf(g, 0) {
			return math.Inf(1)
		}
		d += (g - want[k]) * (g - want[k])
		n += want[k] * want[k]
	}
	return math.Sqrt(d / n)
}

func norm64(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

func norm32(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// biasBeforeNorm reports whether the named parameter is the bias of a conv
// whose output goes straight into an instance norm: every conv of the
// network but the output head.
func biasBeforeNorm(name string) bool {
	scope, ok := strings.CutSuffix(name, ".bias")
	if !ok || strings.HasPrefix(scope, "out.conv") {
		return false
	}
	parts := strings.Split(scope, ".")
	for _, p := range parts {
		if p == "norm" || p == "dwnorm" {
			return false
		}
	}
	return true
}

// loadTorchModel builds the model of a case's config with the fixture's
// parameter values, checking that the names and shapes agree both ways.
func loadTorchModel(t *testing.T, dir string) *Model {
	t.Helper()
	cfg := fixtureConfig(t, dir, "testdata/model/make_fixtures.py")
	m, err := New(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	stored := npyNames(t, filepath.Join(dir, "params"))
	have := map[string]bool{}
	for _, p := range m.Params {
		have[p.Name] = true
		a := readNPY(t, filepath.Join(dir, "params", p.Name+".npy"))
		if !slices.Equal(a.shape, p.Shape) {
			t.Fatalf("parameter %s: PyTorch shape %v, model shape %v", p.Name, a.shape, p.Shape)
		}
		m.Values[p.Name] = a.float32s()
	}
	for _, name := range stored {
		if !have[name] {
			t.Errorf("PyTorch has parameter %s, the model does not", name)
		}
	}
	if len(stored) != len(m.Params) {
		t.Fatalf("PyTorch has %d parameters, the model %d", len(stored), len(m.Params))
	}
	return m
}

func TestWholeNetworkAgainstPyTorch(t *testing.T) {
	for _, name := range torchCases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(torchFixtureDir(), name)
			m := loadTorchModel(t, dir)
			net, err := NewNet(m, ops.NewCPU())
			if err != nil {
				t.Fatal(err)
			}
			defer net.Close()
			for dom, d := range m.Config.Domains {
				t.Run(d.Name, func(t *testing.T) {
					checkDomainAgainstPyTorch(t, net, dom, filepath.Join(dir, d.Name))
				})
			}
		})
	}
	// Every case folder must be in the table, so none is silently skipped.
	entries, err := os.ReadDir(torchFixtureDir())
	if err != nil {
		t.Fatalf("fixtures missing (run testdata/model/make_fixtures.py): %v", err)
	}
	for _, e := range entries {
		if e.IsDir() && !slices.Contains(torchCases, e.Name()) {
			t.Errorf("fixture %s is not compared by any test case", e.Name())
		}
	}
}

func checkDomainAgainstPyTorch(t *testing.T, net *Net, dom int, dir string) {
	m := net.Model
	d := m.Config.Domains[dom]
	xa := readNPY(t, filepath.Join(dir, "x.npy"))
	la := readNPY(t, filepath.Join(dir, "labels.npy"))
	if len(xa.shape) != 5 || xa.shape[1] != d.InChannels {
		t.Fatalf("input shape %v, want [N, %d, D, H, W]", xa.shape, d.InChannels)
	}
	batch, size := xa.shape[0], [3]int{xa.shape[2], xa.shape[3], xa.shape[4]}
	if !slices.Equal(la.shape, []int{batch, size[0], size[1], size[2]}) {
		t.Fatalf("labels shape %v does not match input shape %v", la.shape, xa.shape)
	}
	x := xa.float32s()

	losses, err := net.Gradients(dom, batch, size, x, la.i)
	if err != nil {
		t.Fatal(err)
	}
	logits, err := net.Forward(dom, batch, size, x)
	if err != nil {
		t.Fatal(err)
	}
	want := readNPY(t, filepath.Join(dir, "logits.npy"))
	if !slices.Equal(want.shape, []int{batch, d.Classes, size[0], size[1], size[2]}) {
		t.Fatalf("PyTorch logits shape %v, want [%d, %d, %v]", want.shape, batch, d.Classes, size)
	}
	if e := relL2of64(logits, want.f); !(e <= torchLogitsTol) {
		t.Errorf("logits: relative L2 error %.3g > %g", e, torchLogitsTol)
	} else {
		t.Logf("logits: relative L2 error %.3g", e)
	}
	wantLoss := readNPY(t, filepath.Join(dir, "loss.npy")).f
	for k, got := range []float64{losses.CrossEntropy, losses.Dice} {
		what := [2]string{"cross-entropy", "soft Dice"}[k]
		if e := math.Abs(got-wantLoss[k]) / math.Abs(wantLoss[k]); !(e <= torchLossTol) {
			t.Errorf("%s: %.8g, PyTorch %.8g (relative error %.3g > %g)", what, got, wantLoss[k], e, torchLossTol)
		} else {
			t.Logf("%s: relative error %.3g", what, e)
		}
	}

	// The gradients: exactly the parameters the domain uses have one.
	stored := npyNames(t, filepath.Join(dir, "grads"))
	var used []string
	worst, worstName, worstZero := 0.0, "", 0.0
	var allGot []float32
	var allWant []float64
	for _, p := range m.Params {
		if p.Domain >= 0 && p.Domain != dom {
			continue
		}
		used = append(used, p.Name)
		got, ok, err := net.Gradient(p.Name)
		if err != nil || !ok {
			t.Fatalf("%s: no gradient (%v)", p.Name, err)
		}
		wa := readNPY(t, filepath.Join(dir, "grads", p.Name+".npy"))
		if !slices.Equal(wa.shape, p.Shape) {
			t.Fatalf("gradient of %s: PyTorch shape %v, model shape %v", p.Name, wa.shape, p.Shape)
		}
		zero := norm64(wa.f) <= torchZeroGradWant
		if zero != biasBeforeNorm(p.Name) {
			t.Errorf("%s: PyTorch gradient norm %.3g; a zero gradient is expected exactly for conv biases before a norm",
				p.Name, norm64(wa.f))
		}
		if zero {
			n := norm32(got)
			worstZero = max(worstZero, n)
			if !(n <= torchZeroGradFloor) {
				t.Errorf("gradient of %s: L2 norm %.3g > %g, PyTorch's is %.3g (zero by construction)",
					p.Name, n, torchZeroGradFloor, norm64(wa.f))
			}
			continue
		}
		allGot, allWant = append(allGot, got...), append(allWant, wa.f...)
		e := relL2of64(got, wa.f)
		if e > worst || math.IsNaN(e) {
			worst, worstName = e, p.Name
		}
		if !(e <= torchGradTol) {
			t.Errorf("gradient of %s: relative L2 error %.3g > %g", p.Name, e, torchGradTol)
		}
	}
	if e := relL2of64(allGot, allWant); !(e <= torchAllGradTol) {
		t.Errorf("all gradients together: relative L2 error %.3g > %g", e, torchAllGradTol)
	} else {
		t.Logf("all gradients together: relative L2 error %.3g", e)
	}
	sort.Strings(used)
	if !slices.Equal(used, stored) {
		t.Errorf("parameters with a gradient: PyTorch %d, model %d; they differ", len(stored), len(used))
	}
	t.Logf("%d gradients: worst relative L2 error %.3g (%s); largest zero-by-construction gradient %.3g",
		len(used), worst, worstName, worstZero)
}

// The reference implementation itself (huangmozhilv/u2net_torch, universal
// mode) through the fixtures in testdata/reference/universal, made by
// testdata/reference/make_fixtures.py: its state_dict, imported as a user
// imports one, gives the logits that the reference's own forward pass
// computes (float64) for every domain, within the float32 rounding of the
// whole network (torchLogitsTol), on the CPU engine and the GPU. This ties
// the import's key mapping and the network's wiring to the reference's
// code, not to a description of it.
func TestReferenceImplementation(t *testing.T) {
	dir := filepath.Join("..", "testdata", "reference", "universal")
	cfg := fixtureConfig(t, dir, "testdata/reference/make_fixtures.py")
	m, err := ImportTorch(filepath.Join(dir, "state.safetensors"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Exported again, it is the reference's state_dict byte for byte.
	exported := filepath.Join(t.TempDir(), "state.safetensors")
	if err := m.ExportTorch(exported); err != nil {
		t.Fatal(err)
	}
	ref, out := readSafetensors(t, filepath.Join(dir, "state.safetensors")), readSafetensors(t, exported)
	refNames, outNames := slices.Clone(ref.Names()), slices.Clone(out.Names())
	slices.Sort(refNames)
	slices.Sort(outNames)
	if !slices.Equal(refNames, outNames) {
		t.Errorf("exported keys differ from the reference's state_dict")
	}
	for _, name := range refNames {
		a, _ := ref.Tensor(name)
		b, ok := out.Tensor(name)
		if !ok || !slices.Equal(a.Shape(), b.Shape()) || !bytes.Equal(a.Data(), b.Data()) {
			t.Errorf("exported %s differs from the reference's", name)
		}
	}
	for _, e := range []ops.Engine{ops.NewCPU(), openGPU(t)} {
		net, err := NewNet(m, e)
		if err != nil {
			t.Fatal(err)
		}
		for dom := range cfg.Domains {
			x := readNPY(t, filepath.Join(dir, fmt.Sprintf("input_%d.npy", dom)))
			want := readNPY(t, filepath.Join(dir, fmt.Sprintf("logits_%d.npy", dom)))
			size := [3]int{x.shape[2], x.shape[3], x.shape[4]}
			got, err := net.Forward(dom, x.shape[0], size, x.float32s())
			if err != nil {
				t.Fatal(err)
			}
			if d := relL2of64(got, want.f); !(d < torchLogitsTol) {
				t.Errorf("%s, domain %s: logits differ from the reference's by %.2g (relative L2), want below %g", e.Name(), cfg.Domains[dom].Name, d, torchLogitsTol)
			}
		}
		net.Close()
	}
}

func readSafetensors(t *testing.T, path string) safetensors.SafeTensors {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := safetensors.Deserialize(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return st
}

// fixtureConfig reads the config.json of a fixture folder that the script
// maker writes.
func fixtureConfig(t *testing.T, dir, maker string) Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatalf("fixture missing (run %s): %v", maker, err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
