package u2net

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nlpodyssey/safetensors"
)

// referenceKeys reads the reference's state_dict names and shapes for a mode
// from testdata (copied from the reference listing).
func referenceKeys(t *testing.T, mode string) map[string][]uint64 {
	t.Helper()
	f, err := os.Open("../testdata/reference/reference-state-dict-keys.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]uint64{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## mode=") {
			in = strings.HasPrefix(line, "## mode="+mode+" ")
			continue
		}
		if !in || line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, shapeText, _ := strings.Cut(line, " ")
		var shape []uint64
		for _, s := range strings.Split(strings.Trim(shapeText, "[]"), ",") {
			v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			shape = append(shape, v)
		}
		keys[name] = shape
	}
	return keys
}

// writeStateDict writes a state_dict whose every element encodes the index
// of its tensor, so the test can tell where each landed.
func writeStateDict(t *testing.T, keys map[string][]uint64, drop, extra string) (string, map[string]float32) {
	t.Helper()
	views := map[string]f32View{}
	codes := map[string]float32{}
	i := 0
	for name, shape := range keys {
		if name == drop {
			continue
		}
		i++
		n := uint64(1)
		for _, s := range shape {
			n *= s
		}
		v := make([]float32, n)
		for j := range v {
			v[j] = float32(i)
		}
		codes[name] = float32(i)
		views[name] = f32View{shape, f32Bytes(v)}
	}
	if extra != "" {
		views[extra] = f32View{[]uint64{1}, f32Bytes([]float32{0})}
	}
	b, err := safetensors.Serialize(views, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "state.safetensors")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, codes
}

func TestImportReferenceStateDict(t *testing.T) {
	for _, mode := range []string{ModeUniversal, ModeShared} {
		keys := referenceKeys(t, mode)
		path, codes := writeStateDict(t, keys, "", "")
		m, err := ImportTorch(path, referenceConfig(mode))
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if len(m.Params) != len(keys) {
			t.Fatalf("%s: %d parameters, the state_dict has %d", mode, len(m.Params), len(keys))
		}
		for _, p := range m.Params {
			key, _ := torchName(m.Config, p.Name)
			if got := m.Values[p.Name][0]; got != codes[key] {
				t.Errorf("%s: %s holds the values of tensor %v, want %s", mode, p.Name, got, key)
			}
		}
	}
}

func TestImportRefusesMismatches(t *testing.T) {
	keys := referenceKeys(t, ModeUniversal)
	keys["down_blocks.0.op1.pwise.conv1.weight"] = []uint64{8, 9, 1, 1, 1}
	path, _ := writeStateDict(t, keys, "out_tr_list.1.conv1.bias", "running_mean")
	_, err := ImportTorch(path, referenceConfig(ModeUniversal))
	if err == nil {
		t.Fatal("a mismatched state_dict was imported")
	}
	for _, want := range []string{"missing out_tr_list.1.conv1.bias", "down_blocks.0.op1.pwise.conv1.weight: shape [8 9 1 1 1]", "unexpected running_mean", "3 problem(s)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	cfg := referenceConfig(ModeUniversal)
	cfg.Upsample = UpsampleTranspose
	if _, err := ImportTorch(path, cfg); err == nil || !strings.Contains(err.Error(), "nearest") {
		t.Errorf("import with transpose up-sampling: %v", err)
	}
}

// An exported model is the reference's state_dict, key for key and shape for
// shape, and imports back to the same values.
func TestExportTorchRoundTrip(t *testing.T) {
	for _, mode := range []string{ModeUniversal, ModeShared} {
		m, err := New(referenceConfig(mode), 3)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "state.safetensors")
		if err := m.ExportTorch(path); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		st, err := safetensors.Deserialize(data)
		if err != nil {
			t.Fatal(err)
		}
		want := referenceKeys(t, mode)
		if got := st.Names(); len(got) != len(want) {
			t.Errorf("%s: %d tensors exported, the reference has %d", mode, len(got), len(want))
		}
		for name, shape := range want {
			tv, ok := st.Tensor(name)
			if !ok || !slices.Equal(tv.Shape(), shape) || tv.DType() != safetensors.F32 {
				t.Errorf("%s: %s exported as %v, want float32 %v", mode, name, tv, shape)
			}
		}
		back, err := ImportTorch(path, m.Config)
		if err != nil {
			t.Fatalf("%s: importing the export: %v", mode, err)
		}
		for _, p := range m.Params {
			if !slices.Equal(back.Values[p.Name], m.Values[p.Name]) {
				t.Fatalf("%s: %s changed on the way out and back", mode, p.Name)
			}
		}
	}
	for _, c := range []struct {
		mode, upsample, want string
	}{
		{ModeUniversal, UpsampleTranspose, "nearest"},
		{ModeIndependent, UpsampleNearest, `mode "independent"`},
	} {
		cfg := referenceConfig(ModeUniversal)
		cfg.Mode, cfg.Upsample = c.mode, c.upsample
		m, err := New(cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "x.safetensors")
		if err := m.ExportTorch(path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("export of a %s model with %s up-sampling: %v, want an error naming %q", c.mode, c.upsample, err, c.want)
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("a refused export left %s", path)
		}
	}
}
