package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/u2net"
)

func TestInfo(t *testing.T) {
	dir := t.TempDir()
	cfg := u2net.DefaultConfig()
	cfg.BaseChannels = 4
	cfg.PoolsPerAxis = [3]int{2, 2, 2}
	cfg.Domains = []u2net.Domain{{Name: "heart", InChannels: 1, Classes: 2}, {Name: "prostate", InChannels: 2, Classes: 3}}
	cfg.Domains[0].Plan = json.RawMessage(`{"version": 1, "domain": "heart", "modalities": ["MRI"], "labels": ["background", "heart"],
		"target_spacing": [1, 1, 1], "median_shape": [40, 40, 40], "patch": [16, 32, 32], "normalization": [{"scheme": "zscore"}]}`)
	m, err := u2net.New(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "m.safetensors")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run("info", path)
	if code != 0 {
		t.Fatalf("info: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"mode universal", "total", "shared", "domain heart (1 in, 2 classes, with preprocessing plan, trained at 16×32×32)",
		"domain prostate (2 in, 3 classes)", "%"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("info output lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = run("info", "--json", path)
	var rep struct {
		Parameters u2net.ParamCounts `json:"parameters"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil || rep.Parameters.Total != m.Counts().Total {
		t.Errorf("info --json: exit %d, %s", code, stdout)
	}
	cfgPath := filepath.Join(dir, "c.json")
	b, _ := json.Marshal(cfg)
	os.WriteFile(cfgPath, b, 0o644)
	if code, stdout, _ := run("info", "--config", cfgPath); code != 0 || !strings.Contains(stdout, "total") {
		t.Errorf("info --config: exit %d, %s", code, stdout)
	}
	if code, _, stderr := run("info", filepath.Join(dir, "missing.safetensors")); code != 1 || !strings.Contains(stderr, "missing.safetensors") {
		t.Errorf("info on a missing file: exit %d, %s", code, stderr)
	}
	if code, _, _ := run("info"); code != 2 {
		t.Errorf("info without a model: exit %d", code)
	}
}

func TestImportFlags(t *testing.T) {
	code, _, stderr := run("import", "--torch", "x")
	if code != 2 || !strings.Contains(stderr, "missing --config, --out") {
		t.Errorf("import without flags: exit %d, %s", code, stderr)
	}
}

// export writes what import reads back: the same parameters, value for
// value; a model the reference cannot express is refused with the reason.
func TestExportImport(t *testing.T) {
	dir := t.TempDir()
	cfg := u2net.DefaultConfig()
	cfg.BaseChannels, cfg.PoolsPerAxis, cfg.Upsample = 4, [3]int{2, 2, 2}, u2net.UpsampleNearest
	cfg.Domains = []u2net.Domain{{Name: "heart", InChannels: 1, Classes: 2}, {Name: "prostate", InChannels: 2, Classes: 3}}
	model := newModelFile(t, cfg, filepath.Join(dir, "m.safetensors"))
	torch, config, back := filepath.Join(dir, "state.safetensors"), filepath.Join(dir, "config.json"), filepath.Join(dir, "back.safetensors")
	if code, stdout, stderr := run("export", "--model", model, "--torch", torch, "--config", config); code != 0 || !strings.Contains(stdout, "wrote "+torch) {
		t.Fatalf("export: exit %d: %s %s", code, stdout, stderr)
	}
	if code, _, stderr := run("import", "--torch", torch, "--config", config, "--out", back); code != 0 {
		t.Fatalf("import of the export: exit %d: %s", code, stderr)
	}
	a, err := u2net.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	b, err := u2net.Load(back)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range a.Params {
		if !slices.Equal(a.Values[p.Name], b.Values[p.Name]) {
			t.Fatalf("%s changed on the way out and back", p.Name)
		}
	}
	cfg.Upsample = u2net.UpsampleTranspose
	transposed := newModelFile(t, cfg, filepath.Join(dir, "t.safetensors"))
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"export", "--model", transposed, "--torch", filepath.Join(dir, "x.safetensors")}, 1, "nearest"},
		{[]string{"export", "--model", model}, 2, "--model and --torch are required"},
	} {
		if code, _, stderr := run(c.args...); code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("u2net %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), code, stderr, c.code, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.safetensors")); err == nil {
		t.Error("a refused export wrote its file")
	}
}
