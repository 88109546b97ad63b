// Package dataset reads medical segmentation datasets in the layout of the
// Medical Segmentation Decathlon: a folder with dataset.json, the training
// images and labels in imagesTr/ and labelsTr/, and test images in imagesTs/
// (with, optionally, their labels in labelsTs/ for evaluation).
//
// Images may be multi-modal (4D, one channel per modality); labels are 3D
// integer maps whose values are listed in dataset.json. The dataset's name
// is the domain name used by the model. Opening a dataset checks the JSON
// and that the files exist; loading a case checks the image and label
// against each other and against dataset.json. Errors name the case and file.
package dataset

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/u2net-vk/u2net/u2net/nifti"
)

// DefaultAffineTolerance is the largest difference, per element, allowed
// between the affines of a case's image and label (millimetres for the
// offsets, and relative units for the direction part).
const DefaultAffineTolerance = 1e-3

// Dataset is an opened dataset folder.
type Dataset struct {
	Root        string // the folder holding dataset.json
	Name        string // the domain name
	Description string
	Modalities  []string // modality of input channel i, e.g. "CT" or "FLAIR"
	Labels      []string // name of label value i; value 0 is the background
	Training    []Case
	Test        []Case

	// AffineTolerance is the per-element tolerance Load allows between
	// image and label affines; Open sets DefaultAffineTolerance.
	AffineTolerance float64
}

// Case is one image (and its label, when known) of a dataset.
type Case struct {
	ID    string // the image file name without .nii/.nii.gz
	Image string // path of the image file
	Label string // path of the label file; "" when there is none
}

// Sample is a loaded case.
type Sample struct {
	Case  Case
	Image *nifti.Volume // [C = modalities, D, H, W]
	Label []uint8       // [D, H, W] label values; nil without a label
}

// Error reports a problem with a dataset, naming the case and file at fault
// when there is one.
type Error struct {
	Dataset string // dataset folder
	Case    string // case ID, or ""
	File    string // file, or ""
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("dataset ")
	b.WriteString(e.Dataset)
	if e.Case != "" {
		b.WriteString(": case ")
		b.WriteString(e.Case)
	}
	if e.File != "" {
		b.WriteString(": ")
		b.WriteString(e.File)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// NumChannels returns the number of input channels (modalities).
func (d *Dataset) NumChannels() int { return len(d.Modalities) }

// NumClasses returns the number of label values, background included.
func (d *Dataset) NumClasses() int { return len(d.Labels) }

// descriptor mirrors dataset.json.
type descriptor struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Modality    map[string]string `json:"modality"`
	Labels      map[string]string `json:"labels"`
	NumTraining *int              `json:"numTraining"`
	Training    []struct {
		Image string `json:"image"`
		Label string `json:"label"`
	} `json:"training"`
	Test []string `json:"test"`
}

// Open reads root/dataset.json, checks it and checks that every listed file
// exists. Test cases get a label when labelsTs/ holds a file of the image's
// name. It loads no image.
func Open(root string) (*Dataset, error) {
	d := &Dataset{Root: root, AffineTolerance: DefaultAffineTolerance}
	jsonPath := filepath.Join(root, "dataset.json")
	fail := func(format string, args ...any) error {
		return &Error{Dataset: root, File: jsonPath, Err: fmt.Errorf(format, args...)}
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return nil, &Error{Dataset: root, Err: err}
	}
	var desc descriptor
	if err := json.Unmarshal(b, &desc); err != nil {
		return nil, fail("%v", err)
	}
	if strings.TrimSpace(desc.Name) == "" {
		return nil, fail(`"name" is missing or empty`)
	}
	d.Name, d.Description = desc.Name, desc.Description
	if d.Modalities, err = indexedNames(desc.Modality); err != nil {
		return nil, fail(`"modality": %v`, err)
	}
	if d.Labels, err = labelNames(desc.Labels); err != nil {
		return nil, fail(`"labels": %v`, err)
	}
	if desc.NumTraining != nil && *desc.NumTraining != len(desc.Training) {
		return nil, fail(`"numTraining" is %d but "training" lists %d cases`, *desc.NumTraining, len(desc.Training))
	}
	if len(desc.Training) == 0 {
		return nil, fail(`"training" lists no cases`)
	}
	seen := map[string]string{}
	addID := func(id, file string) error {
		if prev, dup := seen[id]; dup {
			return fail("case ID %s appears twice (%s and %s)", id, prev, file)
		}
		seen[id] = file
		return nil
	}
	for i, t := range desc.Training {
		if t.Image == "" || t.Label == "" {
			return nil, fail(`"training"[%d]: needs both "image" and "label"`, i)
		}
		img, err := d.resolve(t.Image)
		if err != nil {
			return nil, fail(`"training"[%d] image: %v`, i, err)
		}
		lab, err := d.resolve(t.Label)
		if err != nil {
			return nil, fail(`"training"[%d] label: %v`, i, err)
		}
		c := Case{ID: CaseID(img), Image: img, Label: lab}
		if err := addID(c.ID, t.Image); err != nil {
			return nil, err
		}
		d.Training = append(d.Training, c)
	}
	for i, t := range desc.Test {
		img, err := d.resolve(t)
		if err != nil {
			return nil, fail(`"test"[%d]: %v`, i, err)
		}
		c := Case{ID: CaseID(img), Image: img}
		if err := addID(c.ID, t); err != nil {
			return nil, err
		}
		lab := filepath.Join(root, "labelsTs", filepath.Base(img))
		if _, err := os.Stat(lab); err == nil {
			c.Label = lab
		}
		d.Test = append(d.Test, c)
	}
	for _, c := range append(append([]Case(nil), d.Training...), d.Test...) {
		for _, f := range []string{c.Image, c.Label} {
			if f == "" {
				continue
			}
			st, err := os.Stat(f)
			if err != nil {
				return nil, &Error{Dataset: root, Case: c.ID, File: f, Err: errors.New("file listed in dataset.json is missing or unreadable")}
			}
			if !st.Mode().IsRegular() {
				return nil, &Error{Dataset: root, Case: c.ID, File: f, Err: errors.New("not a regular file")}
			}
		}
	}
	return d, nil
}

// resolve turns a path from dataset.json ("./imagesTr/x.nii.gz" or
// "imagesTr/x.nii.gz") into a path under the root, refusing absolute paths
// and paths that leave the dataset folder.
func (d *Dataset) resolve(p string) (string, error) {
	p = strings.ReplaceAll(p, "\\", "/")
	if path.IsAbs(p) || filepath.IsAbs(p) {
		return "", fmt.Errorf("path %q is absolute; paths are relative to the dataset folder", p)
	}
	clean := path.Clean(p)
	if clean == ".." || strings.HasPrefix(clean, "../") || clean == "." {
		return "", fmt.Errorf("path %q is outside the dataset folder", p)
	}
	if !strings.HasSuffix(clean, ".nii") && !strings.HasSuffix(clean, ".nii.gz") {
		return "", fmt.Errorf("path %q is not a .nii or .nii.gz file", p)
	}
	return filepath.Join(d.Root, filepath.FromSlash(clean)), nil
}

// CaseID is the ID of the case of an image file: its name without .nii or
// .nii.gz.
func CaseID(p string) string {
	b := filepath.Base(p)
	b = strings.TrimSuffix(b, ".gz")
	return strings.TrimSuffix(b, ".nii")
}

// ReadLabels returns the label names of a dataset.json (name i for label
// value i, the background first) with the checks of [Open], without
// reading or checking the rest of the file.
func ReadLabels(jsonPath string) ([]string, error) {
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return nil, err
	}
	var desc struct {
		Labels map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(b, &desc); err != nil {
		return nil, fmt.Errorf("%s: %w", jsonPath, err)
	}
	names, err := labelNames(desc.Labels)
	if err != nil {
		return nil, fmt.Errorf(`%s: "labels": %w`, jsonPath, err)
	}
	return names, nil
}

// labelNames checks and orders the "labels" of a dataset.json.
func labelNames(m map[string]string) ([]string, error) {
	names, err := indexedNames(m)
	switch {
	case err != nil:
		return nil, err
	case len(names) < 2:
		return nil, fmt.Errorf("need the background and at least one class, got %d label(s)", len(names))
	case len(names) > 256:
		return nil, fmt.Errorf("%d labels; at most 256 are supported", len(names))
	}
	return names, nil
}

// indexedNames turns {"0": "a", "1": "b"} into [a b]; the keys must be the
// integers 0..n-1.
func indexedNames(m map[string]string) ([]string, error) {
	if len(m) == 0 {
		return nil, errors.New("missing or empty")
	}
	keys := make([]int, 0, len(m))
	for k := range m {
		i, err := strconv.Atoi(strings.TrimSpace(k))
		if err != nil || i < 0 {
			return nil, fmt.Errorf("key %q is not a non-negative integer", k)
		}
		keys = append(keys, i)
	}
	sort.Ints(keys)
	names := make([]string, len(keys))
	for i, k := range keys {
		if k != i {
			return nil, fmt.Errorf("keys must be 0..%d without gaps; %d is missing", len(keys)-1, i)
		}
	}
	for k, v := range m {
		i, _ := strconv.Atoi(strings.TrimSpace(k))
		names[i] = v
	}
	return names, nil
}

// Load reads a case's image and label and checks them: the image has one
// channel per modality and only finite values; the label is 3D with the
// image's spatial shape and affine (within AffineTolerance) and holds only
// values listed in dataset.json.
func (d *Dataset) Load(c Case) (*Sample, error) {
	img, err := nifti.ReadFile(c.Image)
	if err != nil {
		return nil, &Error{Dataset: d.Root, Case: c.ID, File: c.Image, Err: err}
	}
	bad := func(file, format string, args ...any) error {
		return &Error{Dataset: d.Root, Case: c.ID, File: file, Err: fmt.Errorf(format, args...)}
	}
	if img.Shape[0] != len(d.Modalities) {
		return nil, bad(c.Image, "image has %d channel(s), dataset.json lists %d modalities", img.Shape[0], len(d.Modalities))
	}
	if err := img.CheckFinite(); err != nil {
		return nil, &Error{Dataset: d.Root, Case: c.ID, File: c.Image, Err: err}
	}
	s := &Sample{Case: c, Image: img}
	if c.Label == "" {
		return s, nil
	}
	lab, err := nifti.ReadFile(c.Label)
	if err != nil {
		return nil, &Error{Dataset: d.Root, Case: c.ID, File: c.Label, Err: err}
	}
	if lab.Shape[0] != 1 {
		return nil, bad(c.Label, "label has %d channels; want a 3D label map", lab.Shape[0])
	}
	if xyz(lab.Shape) != xyz(img.Shape) {
		return nil, bad(c.Label, "label shape (x, y, z) = %v differs from the image's %v", xyz(lab.Shape), xyz(img.Shape))
	}
	if a, b := img.Affine(), lab.Affine(); !a.Approx(b, d.AffineTolerance) {
		return nil, bad(c.Label, "label affine %v differs from the image's %v by more than %g", b, a, d.AffineTolerance)
	}
	s.Label = make([]uint8, len(lab.Data))
	for i, v := range lab.Data {
		if v != float32(math.Trunc(float64(v))) || v < 0 || int(v) >= len(d.Labels) {
			return nil, bad(c.Label, "label value %v at voxel %v (x, y, z) is not one of the %d labels in dataset.json", v, lab.Voxel(i), len(d.Labels))
		}
		s.Label[i] = uint8(v)
	}
	return s, nil
}

// Check loads every training case and every test case and returns the first
// problem found.
func (d *Dataset) Check() error {
	for _, cs := range [][]Case{d.Training, d.Test} {
		for _, c := range cs {
			if _, err := d.Load(c); err != nil {
				return err
			}
		}
	}
	return nil
}

func xyz(s [4]int) [3]int { return [3]int{s[3], s[2], s[1]} }
