package dataset

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/u2net/nifti"
)

var testAffine = nifti.Affine{{0, -1.5, 0, 10}, {1.5, 0, 0, -20}, {0, 0, 3, 5}, {0, 0, 0, 1}}

func writeVol(t *testing.T, path string, shape [4]int, aff nifti.Affine, fill func(i int) float32, dt nifti.Datatype) {
	t.Helper()
	n := shape[0] * shape[1] * shape[2] * shape[3]
	v := &nifti.Volume{Header: nifti.NewHeader(shape, aff), Shape: shape, Data: make([]float32, n)}
	for i := range v.Data {
		v.Data[i] = fill(i)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := nifti.WriteFile(path, v, dt); err != nil {
		t.Fatal(err)
	}
}

// makeDataset writes a two-modality dataset with two training cases and one
// test case (with a label in labelsTs) and returns its folder.
func makeDataset(t *testing.T, edit func(root string, desc map[string]any)) string {
	t.Helper()
	root := t.TempDir()
	img := [4]int{2, 3, 4, 5}
	lab := [4]int{1, 3, 4, 5}
	for _, id := range []string{"case_001", "case_002"} {
		writeVol(t, filepath.Join(root, "imagesTr", id+".nii.gz"), img, testAffine, func(i int) float32 { return float32(i % 7) }, nifti.Float32)
		writeVol(t, filepath.Join(root, "labelsTr", id+".nii.gz"), lab, testAffine, func(i int) float32 { return float32(i % 3) }, nifti.Uint8)
	}
	writeVol(t, filepath.Join(root, "imagesTs", "case_101.nii.gz"), img, testAffine, func(i int) float32 { return 1 }, nifti.Float32)
	writeVol(t, filepath.Join(root, "labelsTs", "case_101.nii.gz"), lab, testAffine, func(i int) float32 { return 0 }, nifti.Uint8)
	desc := map[string]any{
		"name":        "Toy",
		"description": "two-channel toy",
		"modality":    map[string]string{"0": "T1", "1": "T2"},
		"labels":      map[string]string{"0": "background", "1": "a", "2": "b"},
		"numTraining": 2,
		"training": []map[string]string{
			{"image": "./imagesTr/case_001.nii.gz", "label": "./labelsTr/case_001.nii.gz"},
			{"image": "imagesTr/case_002.nii.gz", "label": "labelsTr/case_002.nii.gz"},
		},
		"test": []string{"./imagesTs/case_101.nii.gz"},
	}
	if edit != nil {
		edit(root, desc)
	}
	b, err := json.Marshal(desc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "dataset.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestOpenAndLoad(t *testing.T) {
	root := makeDataset(t, nil)
	d, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "Toy" || d.NumChannels() != 2 || d.NumClasses() != 3 || len(d.Training) != 2 || len(d.Test) != 1 {
		t.Fatalf("dataset %+v", d)
	}
	if d.Training[0].ID != "case_001" || d.Training[0].Image != filepath.Join(root, "imagesTr", "case_001.nii.gz") {
		t.Fatalf("case %+v", d.Training[0])
	}
	if d.Test[0].Label != filepath.Join(root, "labelsTs", "case_101.nii.gz") {
		t.Fatalf("test case %+v: labelsTs not found", d.Test[0])
	}
	s, err := d.Load(d.Training[1])
	if err != nil {
		t.Fatal(err)
	}
	if s.Image.Shape != [4]int{2, 3, 4, 5} || len(s.Label) != 60 || s.Label[5] != 2 {
		t.Fatalf("sample shape %v, %d labels", s.Image.Shape, len(s.Label))
	}
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	cases := []struct {
		name string
		edit func(root string, desc map[string]any)
		want string // in the error text
	}{
		{"no name", func(_ string, d map[string]any) { d["name"] = "" }, `"name"`},
		{"no modality", func(_ string, d map[string]any) { delete(d, "modality") }, `"modality": missing`},
		{"modality gap", func(_ string, d map[string]any) { d["modality"] = map[string]string{"0": "CT", "2": "PET"} }, "1 is missing"},
		{"label key", func(_ string, d map[string]any) { d["labels"] = map[string]string{"0": "bg", "x": "a"} }, `key "x"`},
		{"one label", func(_ string, d map[string]any) { d["labels"] = map[string]string{"0": "bg"} }, "at least one class"},
		{"numTraining", func(_ string, d map[string]any) { d["numTraining"] = 3 }, `"numTraining" is 3`},
		{"no training", func(_ string, d map[string]any) { d["training"] = []any{}; delete(d, "numTraining") }, "no cases"},
		{"missing label entry", func(_ string, d map[string]any) {
			d["training"] = []map[string]string{{"image": "imagesTr/case_001.nii.gz"}}
			d["numTraining"] = 1
		}, `needs both`},
		{"absolute path", func(_ string, d map[string]any) {
			d["test"] = []string{"/etc/case.nii.gz"}
		}, "absolute"},
		{"escaping path", func(_ string, d map[string]any) {
			d["test"] = []string{"../other/case.nii.gz"}
		}, "outside the dataset"},
		{"not nifti", func(_ string, d map[string]any) {
			d["test"] = []string{"imagesTs/case.mha"}
		}, "not a .nii"},
		{"duplicate ID", func(_ string, d map[string]any) {
			d["test"] = []string{"imagesTr/case_001.nii.gz"}
		}, "appears twice"},
		{"missing image", func(root string, _ map[string]any) {
			os.Remove(filepath.Join(root, "imagesTr", "case_002.nii.gz"))
		}, "case case_002: /"},
		{"missing label", func(root string, _ map[string]any) {
			os.Remove(filepath.Join(root, "labelsTr", "case_001.nii.gz"))
		}, "case case_001: "},
		{"bad json", func(root string, d map[string]any) { d["training"] = "nope" }, "dataset.json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := makeDataset(t, c.edit)
			_, err := Open(root)
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *dataset.Error", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
	if _, err := Open(t.TempDir()); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing dataset.json: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	imgShape := [4]int{2, 3, 4, 5}
	labShape := [4]int{1, 3, 4, 5}
	labFile := filepath.Join("labelsTr", "case_002.nii.gz")
	imgFile := filepath.Join("imagesTr", "case_002.nii.gz")
	zero := func(int) float32 { return 0 }
	cases := []struct {
		name    string
		file    string
		shape   [4]int
		aff     nifti.Affine
		fill    func(int) float32
		dt      nifti.Datatype
		wantErr string // "" means Load succeeds
	}{
		{"label shape", labFile, [4]int{1, 3, 4, 6}, testAffine, zero, nifti.Uint8, "label shape"},
		{"label 4D", labFile, [4]int{2, 3, 4, 5}, testAffine, zero, nifti.Uint8, "3D label map"},
		{"label affine", labFile, labShape, shifted(testAffine, 0.01), zero, nifti.Uint8, "label affine"},
		{"label affine within tolerance", labFile, labShape, shifted(testAffine, 1e-4), zero, nifti.Uint8, ""},
		{"label value unlisted", labFile, labShape, testAffine, func(i int) float32 { return float32(i % 4) }, nifti.Uint8, "label value 3"},
		{"label value fractional", labFile, labShape, testAffine, func(i int) float32 { return 0.5 }, nifti.Float32, "label value 0.5"},
		{"label value negative", labFile, labShape, testAffine, func(i int) float32 { return -1 }, nifti.Int16, "label value -1"},
		{"image NaN", imgFile, imgShape, testAffine, func(i int) float32 {
			if i == 70 {
				return float32(math.NaN())
			}
			return 1
		}, nifti.Float32, "NaN at channel 1 voxel [0 2 0]"},
		{"image infinity", imgFile, imgShape, testAffine, func(i int) float32 {
			if i == 1 {
				return float32(math.Inf(-1))
			}
			return 1
		}, nifti.Float32, "-Inf at channel 0 voxel [1 0 0]"},
		{"image channels", imgFile, [4]int{1, 3, 4, 5}, testAffine, zero, nifti.Float32, "1 channel(s)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := makeDataset(t, nil)
			path := filepath.Join(root, c.file)
			writeVol(t, path, c.shape, c.aff, c.fill, c.dt)
			d, err := Open(root)
			if err != nil {
				t.Fatal(err)
			}
			_, err = d.Load(d.Training[1])
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("Load succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, c.wantErr) || !strings.Contains(msg, "case case_002") || !strings.Contains(msg, path) {
				t.Fatalf("error %q should name case case_002, file %s and %q", msg, path, c.wantErr)
			}
			if err := d.Check(); err == nil {
				t.Fatal("Check succeeded")
			}
		})
	}
	// A corrupt file is reported with the case and the NIfTI error.
	root := makeDataset(t, nil)
	path := filepath.Join(root, imgFile)
	os.WriteFile(path, []byte("not nifti"), 0o644)
	d, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Load(d.Training[1])
	var fe *nifti.FormatError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "case case_002") {
		t.Fatalf("corrupt image: %v", err)
	}
}

func shifted(a nifti.Affine, by float64) nifti.Affine {
	a[0][3] += by
	return a
}

// ReadLabels reads the labels alone: a dataset whose cases are missing still
// names its classes, and bad labels fail as Open's do, naming the file.
func TestReadLabels(t *testing.T) {
	root := makeDataset(t, func(root string, _ map[string]any) {
		os.RemoveAll(filepath.Join(root, "imagesTr"))
	})
	names, err := ReadLabels(filepath.Join(root, "dataset.json"))
	if err != nil || strings.Join(names, ",") != "background,a,b" {
		t.Fatalf("ReadLabels: %q, %v", names, err)
	}
	for _, c := range []struct {
		name   string
		labels any
		want   string
	}{
		{"gap", map[string]string{"0": "bg", "2": "a"}, "1 is missing"},
		{"one label", map[string]string{"0": "bg"}, "at least one class"},
		{"missing", nil, "missing or empty"},
		{"not an object", []string{"bg", "a"}, "dataset.json: json"},
	} {
		root := makeDataset(t, func(_ string, d map[string]any) { d["labels"] = c.labels })
		path := filepath.Join(root, "dataset.json")
		if _, err := ReadLabels(path); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want one naming %s and %q", c.name, err, path, c.want)
		}
	}
	if _, err := ReadLabels(filepath.Join(t.TempDir(), "dataset.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
