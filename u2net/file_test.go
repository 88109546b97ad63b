package u2net

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nlpodyssey/safetensors"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, mode := range []string{ModeUniversal, ModeShared, ModeIndependent} {
		m, err := New(tinyConfig(mode, UpsampleTranspose), 5)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "model.safetensors")
		state := map[string][]float32{"state.step": {42}}
		if err := m.SaveFile(path, File{State: state, Meta: map[string]string{"note": "x"}}); err != nil {
			t.Fatal(err)
		}
		got, f, err := LoadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if len(got.Params) != len(m.Params) || got.Config.Mode != mode {
			t.Fatalf("%s: loaded %d params, mode %s", mode, len(got.Params), got.Config.Mode)
		}
		for _, p := range m.Params {
			a, b := m.Values[p.Name], got.Values[p.Name]
			for i := range a {
				if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
					t.Fatalf("%s: %s[%d] = %v, saved %v", mode, p.Name, i, b[i], a[i])
				}
			}
		}
		if f.State["state.step"][0] != 42 || f.Meta["note"] != "x" {
			t.Errorf("%s: state %v meta %v", mode, f.State, f.Meta)
		}
	}
}

// Loading lists every mismatch: missing, unexpected, mis-shaped and
// mistyped tensors.
func TestLoadReportsMismatches(t *testing.T) {
	m, _ := New(tinyConfig(ModeUniversal, UpsampleTranspose), 5)
	cfg := `{"mode":"universal","base_channels":2,"pools_per_axis":[1,2,2],"upsample":"transpose","deep_supervision":true,"residual":true,"domains":[{"name":"ct","in_channels":1,"classes":2},{"name":"mr","in_channels":2,"classes":3}]}`
	views := map[string]f32View{}
	for _, p := range m.Params {
		shape := make([]uint64, len(p.Shape))
		for i, s := range p.Shape {
			shape[i] = uint64(s)
		}
		views[p.Name] = f32View{shape, f32Bytes(m.Values[p.Name])}
	}
	delete(views, "in.conv.ct.weight")
	views["enc0.u1.pw.weight"] = f32View{[]uint64{99}, make([]byte, 4*99)}
	views["bogus.weight"] = f32View{[]uint64{1}, make([]byte, 4)}
	path := filepath.Join(t.TempDir(), "bad.safetensors")
	b, err := safetensors.Serialize(views, map[string]string{"config": cfg})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, b, 0o644)
	_, err = Load(path)
	if err == nil {
		t.Fatal("a mismatched file loaded")
	}
	for _, want := range []string{"missing tensor in.conv.ct.weight", "enc0.u1.pw.weight: shape [99]", "unexpected tensor bogus.weight", "3 problem(s)", path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestLoadRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	data := savedModelBytes(t, dir, tinyConfig(ModeShared, UpsampleNearest))
	cases := map[string][]byte{
		"truncated.safetensors": data[:len(data)/2],
		"empty.safetensors":     nil,
		"garbage.safetensors":   []byte("this is not a model file at all"),
	}
	for name, content := range cases {
		p := filepath.Join(dir, name)
		os.WriteFile(p, content, 0o644)
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Load(filepath.Join(dir, "absent.safetensors")); err == nil {
		t.Error("loading a missing file succeeded")
	}
}

// Loading survives random corruption: a thousand copies of a model file
// with a few bytes changed, some of them also cut short, load or fail with
// an error that names the file, and never panic.
func TestLoadSurvivesCorruption(t *testing.T) {
	dir := t.TempDir()
	data := savedModelBytes(t, dir, tinyConfig(ModeUniversal, UpsampleTranspose))
	r := rand.New(rand.NewPCG(9, 9))
	p := filepath.Join(dir, "corrupt.safetensors")
	for i := 0; i < 1000; i++ {
		b := slices.Clone(data)
		for range 1 + r.IntN(4) {
			b[r.IntN(len(b))] = byte(r.IntN(256))
		}
		if r.IntN(4) == 0 {
			b = b[:r.IntN(len(b))]
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p); err != nil && !strings.Contains(err.Error(), p) {
			t.Fatalf("corruption %d: error %q does not name the file", i, err)
		}
	}
}

// A failed save leaves the previous file intact.
func TestSaveIsAtomic(t *testing.T) {
	dir := t.TempDir()
	m, _ := New(tinyConfig(ModeShared, UpsampleNearest), 1)
	path := filepath.Join(dir, "model.safetensors")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	m.Values[m.Params[0].Name] = []float32{1} // wrong length: the save fails
	if err := m.Save(path); err == nil {
		t.Fatal("saving a broken model succeeded")
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Error("a failed save changed the existing file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

// savedModelBytes saves a new model of cfg as dir/good.safetensors and
// returns the file's bytes.
func savedModelBytes(t testing.TB, dir string, cfg Config) []byte {
	t.Helper()
	m, err := New(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.safetensors")
	if err := m.Save(good); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
