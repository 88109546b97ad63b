package synth

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/u2net/dataset"
	"github.com/u2net-vk/u2net/u2net/preprocess"
)

var small = Config{Seed: 5, Cases: 3, TestCases: 1, Size: 20}

// readTree returns every file under dir by relative path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWriteDeterministic(t *testing.T) {
	base := t.TempDir()
	a, b, c := filepath.Join(base, "a"), filepath.Join(base, "b"), filepath.Join(base, "c")
	if _, err := Write(a, small); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(b, small); err != nil {
		t.Fatal(err)
	}
	other := small
	other.Seed = 6
	if _, err := Write(c, other); err != nil {
		t.Fatal(err)
	}
	ta, tb, tc := readTree(t, a), readTree(t, b), readTree(t, c)
	// 3 domains × (dataset.json + 4 images + 4 labels)
	if len(ta) != 27 || len(tb) != len(ta) {
		t.Fatalf("%d and %d files", len(ta), len(tb))
	}
	differ := 0
	for name, x := range ta {
		if !bytes.Equal(x, tb[name]) {
			t.Errorf("%s differs between two runs with the same seed", name)
		}
		if !bytes.Equal(x, tc[name]) {
			differ++
		}
	}
	if differ < 24 {
		t.Errorf("only %d files differ for another seed", differ)
	}
	entries, _ := os.ReadDir(base)
	if len(entries) != 3 {
		t.Errorf("temporary folders left behind: %d entries", len(entries))
	}
}

func TestDomainsLoadAndDiffer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	infos, err := Write(dir, small)
	if err != nil {
		t.Fatal(err)
	}
	var spacings [][3]float64
	for _, info := range infos {
		ds, err := dataset.Open(info.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if ds.Name != info.Name || len(ds.Training) != 3 || len(ds.Test) != 1 || ds.Test[0].Label == "" {
			t.Fatalf("%s: %d training, %d test cases, test label %q", ds.Name, len(ds.Training), len(ds.Test), ds.Test[0].Label)
		}
		if err := ds.Check(); err != nil {
			t.Fatal(err)
		}
		// Every label appears in the training set.
		seen := make([]bool, ds.NumClasses())
		var affines [][4][4]float64
		for _, c := range ds.Training {
			s, err := ds.Load(c)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range s.Label {
				seen[l] = true
			}
			affines = append(affines, s.Image.Affine())
		}
		if slices.Contains(seen, false) {
			t.Errorf("%s: labels seen %v", ds.Name, seen)
		}
		if affines[0] == affines[1] {
			t.Errorf("%s: two cases share an affine", ds.Name)
		}
		p, err := preprocess.NewPlan(ds, preprocess.PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		spacings = append(spacings, p.TargetSpacing)
		if info.Name == "SynthVessel" && p.TargetSpacing[0] < 3*p.TargetSpacing[2] {
			t.Errorf("vessel domain is not anisotropic: target spacing %v", p.TargetSpacing)
		}
		if info.Name == "SynthCT" && p.Normalization[0].Scheme != preprocess.SchemeCT {
			t.Errorf("CT domain normalised by %q", p.Normalization[0].Scheme)
		}
	}
	if spacings[0] == spacings[1] || spacings[1] == spacings[2] {
		t.Errorf("domains share a spacing: %v", spacings)
	}
}

func TestWriteRefusesNonEmpty(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("x"), 0o644)
	_, err := Write(dir, small)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("error %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "keep.txt")); string(b) != "x" {
		t.Fatal("existing file touched")
	}
	// An existing empty folder is fine.
	empty := filepath.Join(t.TempDir(), "empty")
	os.Mkdir(empty, 0o755)
	if _, err := Write(empty, small); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Config{{Cases: 1, Size: 4}, {Cases: 0, Size: 20}, {Cases: 1, TestCases: -2, Size: 20}, {Cases: 1, Size: 600}} {
		if _, err := Write(filepath.Join(t.TempDir(), "x"), bad); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}
