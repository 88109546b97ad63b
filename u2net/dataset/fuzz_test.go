package dataset

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen opens a dataset folder whose dataset.json holds arbitrary bytes:
// it must return an error or a dataset whose cases name existing files,
// never panic.
func FuzzOpen(f *testing.F) {
	f.Add([]byte(`{"name": "Spleen", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "spleen"},
		"training": [{"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"}], "test": ["./imagesTs/b.nii.gz"]}`))
	f.Add([]byte(`{"name": "x", "modality": {"0": "MR", "1": "CT"}, "labels": {"0": "bg"}, "training": [], "test": []}`))
	f.Add([]byte(`{"labels": {"-1": "a"}, "modality": {"7": ""}}`))
	f.Fuzz(func(t *testing.T, desc []byte) {
		root := t.TempDir()
		for _, dir := range []string{"imagesTr", "labelsTr", "imagesTs"} {
			os.MkdirAll(filepath.Join(root, dir), 0o755)
		}
		for _, file := range []string{"imagesTr/a.nii.gz", "labelsTr/a.nii.gz", "imagesTs/b.nii.gz"} {
			os.WriteFile(filepath.Join(root, file), nil, 0o644)
		}
		os.WriteFile(filepath.Join(root, "dataset.json"), desc, 0o644)
		ds, err := Open(root)
		if err != nil {
			if ds != nil {
				t.Fatal("dataset returned with an error")
			}
			return
		}
		for _, c := range append(ds.Training, ds.Test...) {
			for _, p := range []string{c.Image, c.Label} {
				if p == "" {
					continue
				}
				if _, err := os.Stat(p); err != nil {
					t.Fatalf("case %s names %s: %v", c.ID, p, err)
				}
			}
		}
	})
}
