package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/u2net/nifti"
)

// evalAffine has voxel size x = 1, y = 1, z = 2 mm.
var evalAffine = nifti.Affine{{1, 0, 0, 10}, {0, 1, 0, -5}, {0, 0, 2, 3}, {0, 0, 0, 1}}

// writeLabels writes a [D][H][W] = [6][6][6] label map with the boxes given
// as {class, z0, z1, y0, y1, x0, x1} (half-open).
func writeLabels(t *testing.T, path string, aff nifti.Affine, shape [3]int, boxes ...[7]int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	labels := make([]uint8, shape[0]*shape[1]*shape[2])
	for _, b := range boxes {
		for z := b[1]; z < b[2]; z++ {
			for y := b[3]; y < b[4]; y++ {
				for x := b[5]; x < b[6]; x++ {
					labels[(z*shape[1]+y)*shape[2]+x] = uint8(b[0])
				}
			}
		}
	}
	h := nifti.NewHeader([4]int{1, shape[0], shape[1], shape[2]}, aff)
	if err := nifti.WriteLabelsLike(path, &h, labels); err != nil {
		t.Fatal(err)
	}
}

// evalFixture writes two reference cases and three predictions:
//   - case_a: a 3³ cube of class 1, predicted one slice further along z
//     (2 mm), and a voxel of class 2 that the prediction misses;
//   - case_b: the same cube predicted exactly, no class 2 anywhere;
//   - case_c: a prediction without reference.
func evalFixture(t *testing.T) (pred, ref string) {
	dir := t.TempDir()
	pred, ref = filepath.Join(dir, "pred"), filepath.Join(dir, "ref")
	sh := [3]int{6, 6, 6}
	writeLabels(t, filepath.Join(ref, "case_a.nii.gz"), evalAffine, sh, [7]int{1, 1, 4, 1, 4, 1, 4}, [7]int{2, 5, 6, 5, 6, 5, 6})
	writeLabels(t, filepath.Join(pred, "case_a.nii.gz"), evalAffine, sh, [7]int{1, 2, 5, 1, 4, 1, 4})
	writeLabels(t, filepath.Join(ref, "case_b.nii"), evalAffine, sh, [7]int{1, 1, 4, 1, 4, 1, 4})
	writeLabels(t, filepath.Join(pred, "case_b.nii.gz"), evalAffine, sh, [7]int{1, 1, 4, 1, 4, 1, 4})
	writeLabels(t, filepath.Join(pred, "case_c.nii.gz"), evalAffine, sh)
	if err := os.WriteFile(filepath.Join(ref, "README.txt"), []byte("not a case"), 0o644); err != nil {
		t.Fatal(err)
	}
	return pred, ref
}

func TestEvalCommand(t *testing.T) {
	pred, ref := evalFixture(t)
	out := filepath.Join(t.TempDir(), "scores.json")
	for _, classes := range []string{"0", "3"} {
		var stdout, stderr bytes.Buffer
		code := runMain([]string{"eval", "--pred", pred, "--ref", ref, "--json", out, "--classes", classes}, &stdout, &stderr)
		if code != 0 {
			t.Fatalf("--classes %s: exit %d: %s", classes, code, stderr.String())
		}
		text := stdout.String()
		t.Logf("--classes %s:\n%s", classes, text)
		for _, want := range []string{
			"dice 1", "hd95 2 (mm)",
			"case_a  0.6667", // 2·18/54 for class 1
			"mean    0.8333",
			"sd      0.2357", // (1 − 2/3)/√2
			"hd95 mean of class 2 leaves out 1 of 2 case(s)",
			"1 prediction(s) without a reference ignored: case_c",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("--classes %s: output lacks %q:\n%s", classes, want, text)
			}
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var rep struct {
			Classes []int
			Cases   []struct {
				Case string
				Dice map[string]float64
				HD95 map[string]*float64
			}
			Mean struct {
				Dice         map[string]float64
				HD95         map[string]*float64
				HD95Excluded map[string]int `json:"hd95_excluded"`
			}
			SD struct {
				Dice map[string]*float64
				HD95 map[string]*float64
			}
		}
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatalf("%v in %s", err, b)
		}
		if len(rep.Cases) != 2 || rep.Cases[0].Case != "case_a" || rep.Cases[1].Case != "case_b" || len(rep.Classes) != 2 {
			t.Fatalf("JSON cases: %s", b)
		}
		approx := func(p *float64, want float64) bool { return p != nil && math.Abs(*p-want) < 1e-9 }
		a, bb := rep.Cases[0], rep.Cases[1]
		// The shifted cube: one slice of 9 voxels left behind on each
		// side, 26 surface voxels each way; HD95 is one slice, 2 mm.
		if math.Abs(a.Dice["1"]-2.0/3) > 1e-9 || !approx(a.HD95["1"], 2) || a.Dice["2"] != 0 || a.HD95["2"] != nil {
			t.Errorf("case_a: dice %v hd95 %v %v", a.Dice, a.HD95["1"], a.HD95["2"])
		}
		if bb.Dice["1"] != 1 || !approx(bb.HD95["1"], 0) || bb.Dice["2"] != 1 || !approx(bb.HD95["2"], 0) {
			t.Errorf("case_b: dice %v hd95 %v", bb.Dice, bb.HD95)
		}
		m := rep.Mean
		if math.Abs(m.Dice["1"]-5.0/6) > 1e-9 || !approx(m.HD95["1"], 1) || m.Dice["2"] != 0.5 || !approx(m.HD95["2"], 0) ||
			m.HD95Excluded["2"] != 1 || m.HD95Excluded["1"] != 0 {
			t.Errorf("mean: %+v (hd95 1 %v, 2 %v)", m, m.HD95["1"], m.HD95["2"])
		}
		// Sample standard deviations over the two cases; class 2 has one
		// finite HD95, too few.
		sd := rep.SD
		if !approx(sd.Dice["1"], (1-2.0/3)/math.Sqrt2) || !approx(sd.HD95["1"], math.Sqrt2) || !approx(sd.Dice["2"], 1/math.Sqrt2) || sd.HD95["2"] != nil {
			t.Errorf("sd: dice %v %v, hd95 %v %v", sd.Dice["1"], sd.Dice["2"], sd.HD95["1"], sd.HD95["2"])
		}
	}
}

func TestEvalErrors(t *testing.T) {
	sh := [3]int{6, 6, 6}
	cube := [7]int{1, 1, 4, 1, 4, 1, 4}
	cases := []struct {
		name  string
		setup func(t *testing.T, pred, ref string)
		args  []string
		code  int
		want  []string
	}{
		{"missing prediction", func(t *testing.T, pred, ref string) {
			os.Remove(filepath.Join(pred, "case_b.nii.gz"))
		}, nil, 1, []string{"no prediction for reference case case_b", "case_b.nii"}},
		{"shape", func(t *testing.T, pred, ref string) {
			writeLabels(t, filepath.Join(pred, "case_b.nii.gz"), evalAffine, [3]int{6, 6, 7}, cube)
		}, nil, 1, []string{"pred/case_b.nii.gz has shape [1 6 6 7]", "ref/case_b.nii has [1 6 6 6]"}},
		{"affine", func(t *testing.T, pred, ref string) {
			a := evalAffine
			a[0][3] += 1
			writeLabels(t, filepath.Join(pred, "case_b.nii.gz"), a, sh, cube)
		}, nil, 1, []string{"pred/case_b.nii.gz and reference", "ref/case_b.nii have different voxel-to-world affines"}},
		{"label above --classes", nil, []string{"--classes", "2"}, 1, []string{"case_a.nii.gz: label 2", "--classes 2"}},
		{"not a label", func(t *testing.T, pred, ref string) {
			h := nifti.NewHeader([4]int{1, 6, 6, 6}, evalAffine)
			data := make([]float32, 216)
			data[7] = 0.5
			if err := nifti.WriteLike(filepath.Join(pred, "case_b.nii.gz"), &h, 1, data, nifti.Float32); err != nil {
				t.Fatal(err)
			}
		}, nil, 1, []string{"case_b.nii.gz: voxel 7 holds 0.5"}},
		{"two channels", func(t *testing.T, pred, ref string) {
			h := nifti.NewHeader([4]int{2, 6, 6, 6}, evalAffine)
			if err := nifti.WriteLike(filepath.Join(pred, "case_b.nii.gz"), &h, 2, make([]float32, 432), nifti.Uint8); err != nil {
				t.Fatal(err)
			}
		}, nil, 1, []string{"case_b.nii.gz: a label map has one channel"}},
		{"duplicate case", func(t *testing.T, pred, ref string) {
			writeLabels(t, filepath.Join(pred, "case_b.nii"), evalAffine, sh, cube)
		}, nil, 1, []string{"--pred", "case case_b is there twice"}},
		{"empty reference folder", func(t *testing.T, pred, ref string) {
			os.RemoveAll(ref)
			os.Mkdir(ref, 0o755)
		}, nil, 1, []string{"no .nii or .nii.gz files"}},
		{"missing folder", func(t *testing.T, pred, ref string) { os.RemoveAll(pred) }, nil, 1, []string{"--pred", "no such file"}},
		{"no flags", nil, []string{"--pred", ""}, 2, []string{"--pred and --ref are required"}},
		{"bad classes", nil, []string{"--classes", "1"}, 2, []string{"--classes 1"}},
		{"extra argument", nil, []string{"x"}, 2, []string{"unexpected arguments"}},
		{"bad json path", nil, []string{"--json", "/nonexistent-dir/x.json"}, 1, []string{"--json /nonexistent-dir/x.json"}},
		{"help", nil, []string{"-h"}, 0, []string{"usage: u2net eval"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pred, ref := evalFixture(t)
			if c.setup != nil {
				c.setup(t, pred, ref)
			}
			args := append([]string{"eval", "--pred", pred, "--ref", ref}, c.args...)
			var stdout, stderr bytes.Buffer
			code := runMain(args, &stdout, &stderr)
			if code != c.code {
				t.Errorf("exit %d, want %d; stderr %s", code, c.code, stderr.String())
			}
			for _, w := range c.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q: %s", w, stderr.String())
				}
			}
		})
	}
}

// A reference folder in a dataset's layout (labelsTs next to dataset.json)
// names the classes and fixes their number; --labels names another file.
func TestEvalClassNames(t *testing.T) {
	setup := func(t *testing.T, labels string) (pred, ref, root string) {
		pred, fixtureRef := evalFixture(t)
		root = filepath.Dir(fixtureRef)
		ref = filepath.Join(root, "labelsTs")
		if err := os.Rename(fixtureRef, ref); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "dataset.json"), []byte(`{"labels": `+labels+`}`), 0o644); err != nil {
			t.Fatal(err)
		}
		return pred, ref, root
	}
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := runMain(append([]string{"eval"}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	pred, ref, root := setup(t, `{"0": "background", "1": "liver", "2": "tumour", "3": "cyst"}`)
	out := filepath.Join(t.TempDir(), "scores.json")
	code, stdout, stderr := run("--pred", pred, "--ref", ref, "--json", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"dice liver", "hd95 tumour (mm)", "dice cyst",
		"hd95 mean of class tumour leaves out 1 of 2", "classes named by " + filepath.Join(root, "dataset.json")} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	var rep struct {
		Classes    []int
		ClassNames map[string]string `json:"class_names"`
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	// Class 3 is in neither map, yet dataset.json lists it.
	if len(rep.Classes) != 3 || rep.ClassNames["1"] != "liver" || rep.ClassNames["3"] != "cyst" || len(rep.ClassNames) != 3 {
		t.Errorf("JSON classes %v, names %v", rep.Classes, rep.ClassNames)
	}

	other := filepath.Join(t.TempDir(), "other.json")
	if err := os.WriteFile(other, []byte(`{"labels": {"0": "bg", "1": "kidney", "2": "mass"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := run("--pred", pred, "--ref", ref, "--labels", other); code != 0 ||
		!strings.Contains(stdout, "dice kidney") || strings.Contains(stdout, "cyst") || strings.Contains(stdout, "named by") {
		t.Errorf("--labels: exit %d:\n%s%s", code, stdout, stderr)
	}

	for _, c := range []struct {
		name   string
		labels string // of the dataset.json above --ref
		args   []string
		code   int
		want   []string
	}{
		{"fewer labels than the maps hold", `{"0": "bg", "1": "liver"}`, nil, 1,
			[]string{"case_a.nii.gz: label 2", "dataset.json, which names 2 labels, allows 0..1"}},
		{"--classes disagrees", `{"0": "bg", "1": "liver", "2": "tumour"}`, []string{"--classes", "4"}, 2,
			[]string{"--classes 4, but", "dataset.json names 3 labels"}},
		{"bad dataset.json", `{"0": "bg", "2": "tumour"}`, nil, 1, []string{"dataset.json", "1 is missing", "--labels chooses another"}},
		{"missing --labels file", `{"0": "bg", "1": "liver", "2": "tumour"}`, []string{"--labels", "/nonexistent/dataset.json"}, 1,
			[]string{"--labels", "/nonexistent/dataset.json"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pred, ref, _ := setup(t, c.labels)
			code, _, stderr := run(append([]string{"--pred", pred, "--ref", ref}, c.args...)...)
			if code != c.code {
				t.Errorf("exit %d, want %d: %s", code, c.code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q: %s", w, stderr)
				}
			}
		})
	}
}
