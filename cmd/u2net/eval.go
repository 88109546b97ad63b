package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/gonum/stat"

	"github.com/u2net-vk/u2net/u2net/dataset"
	"github.com/u2net-vk/u2net/u2net/metrics"
	"github.com/u2net-vk/u2net/u2net/nifti"
)

func init() {
	register(command{name: "eval", short: "score predicted label maps against reference ones (Dice, HD95)", run: runEval})
}

// affineTol is how far (in mm, or per unit of the rotation-scaling part) the
// affines of a prediction and its reference may differ: written and read
// back through float32 header fields they differ by rounding only.
const affineTol = 1e-3

// evalCase is one case of the JSON report. HD95 values are pointers so that
// an undefined distance (one of the two maps lacks the class) is null.
type evalCase struct {
	Case string              `json:"case"`
	Pred string              `json:"pred"`
	Ref  string              `json:"ref"`
	Dice map[string]float64  `json:"dice"`
	HD95 map[string]*float64 `json:"hd95"`
}

type evalMean struct {
	Dice map[string]float64  `json:"dice"`
	HD95 map[string]*float64 `json:"hd95"`
	// HD95Excluded counts, per class, the cases left out of the HD95 mean
	// because the distance is undefined there.
	HD95Excluded map[string]int `json:"hd95_excluded"`
}

// evalSD is the sample standard deviation over the cases (of those with a
// finite HD95 for HD95), null where fewer than two cases count.
type evalSD struct {
	Dice map[string]*float64 `json:"dice"`
	HD95 map[string]*float64 `json:"hd95"`
}

type evalReport struct {
	Classes []int `json:"classes"` // the foreground classes scored
	// ClassNames names the classes by label value when a dataset.json did.
	ClassNames map[string]string `json:"class_names,omitempty"`
	Cases      []evalCase        `json:"cases"`
	Mean       evalMean          `json:"mean"`
	SD         evalSD            `json:"sd"`
}

// className is how the table names class c: its name where known.
func (rep *evalReport) className(c int) string {
	if n, ok := rep.ClassNames[strconv.Itoa(c)]; ok {
		return n
	}
	return strconv.Itoa(c)
}

// runEval compares every reference label map in --ref with the prediction of
// the same name in --pred.
func runEval(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", "", stderr)
	predDir := fs.String("pred", "", "folder of predicted label maps (.nii or .nii.gz)")
	refDir := fs.String("ref", "", "folder of reference label maps; every one needs a prediction of the same name")
	jsonOut := fs.String("json", "", "also write the scores as JSON to this file")
	nClasses := fs.Int("classes", 0, "number of classes including background (labels 0..N-1; foreground 1..N-1 are scored); 0: as many as the dataset.json names, else the largest label found, plus one")
	labelsFile := fs.String("labels", "", `dataset.json whose "labels" name the classes and give their number; default: the dataset.json above --ref when --ref is a dataset's labelsTr or labelsTs folder`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments %q", fs.Args())
	}
	if *predDir == "" || *refDir == "" {
		return usageError("--pred and --ref are required")
	}
	if *nClasses < 0 || *nClasses == 1 || *nClasses > 256 {
		return usageError("--classes %d: want 2..256 (background included), or 0 to infer it", *nClasses)
	}
	var rep evalReport
	labelNames, namesFrom, err := evalClassNames(*labelsFile, *refDir)
	if err != nil {
		return err
	}
	// limit says where the number of classes comes from, for errors.
	limit := fmt.Sprintf("--classes %d", *nClasses)
	if labelNames != nil {
		if *nClasses != 0 && *nClasses != len(labelNames) {
			return usageError("--classes %d, but %s names %d labels (background included)", *nClasses, namesFrom, len(labelNames))
		}
		*nClasses = len(labelNames)
		limit = fmt.Sprintf("%s, which names %d labels,", namesFrom, len(labelNames))
		rep.ClassNames = map[string]string{}
		for c := 1; c < len(labelNames); c++ {
			rep.ClassNames[strconv.Itoa(c)] = labelNames[c]
		}
	}
	refs, err := evalLabelFiles(*refDir, "--ref")
	if err != nil {
		return err
	}
	if len(refs) == 0 {
		return fmt.Errorf("--ref %s: no .nii or .nii.gz files", *refDir)
	}
	preds, err := evalLabelFiles(*predDir, "--pred")
	if err != nil {
		return err
	}
	names := make([]string, 0, len(refs))
	for n := range refs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if _, ok := preds[n]; !ok {
			return fmt.Errorf("no prediction for reference case %s (%s): want %s.nii.gz or %s.nii in %s", n, refs[n], n, n, *predDir)
		}
	}

	// results[i][c-1] holds case i's scores of class c; classes beyond a
	// case's largest label are filled in at the end when N is inferred.
	var results [][]metrics.Result
	maxLabel := 0
	for _, n := range names {
		rs, top, err := evalCaseFiles(preds[n], refs[n], *nClasses, limit)
		if err != nil {
			return err
		}
		maxLabel = max(maxLabel, top)
		results = append(results, rs)
		rep.Cases = append(rep.Cases, evalCase{Case: n, Pred: preds[n], Ref: refs[n]})
	}
	last := *nClasses - 1
	if *nClasses == 0 {
		last = maxLabel
	}
	for c := 1; c <= last; c++ {
		rep.Classes = append(rep.Classes, c)
	}
	for i := range results {
		// A class absent from both maps of a case is a correct prediction
		// of absence.
		for c := len(results[i]) + 1; c <= last; c++ {
			results[i] = append(results[i], metrics.Result{Class: c, Dice: 1, HD95: 0})
		}
	}

	rep.Mean = evalMean{Dice: map[string]float64{}, HD95: map[string]*float64{}, HD95Excluded: map[string]int{}}
	for i := range rep.Cases {
		ec := &rep.Cases[i]
		ec.Dice, ec.HD95 = map[string]float64{}, map[string]*float64{}
		for _, r := range results[i] {
			k := strconv.Itoa(r.Class)
			ec.Dice[k] = r.Dice
			ec.HD95[k] = evalFinite(r.HD95)
		}
	}
	rep.SD = evalSD{Dice: map[string]*float64{}, HD95: map[string]*float64{}}
	for _, c := range rep.Classes {
		k := strconv.Itoa(c)
		var dice, hd []float64
		for i := range results {
			r := results[i][c-1]
			dice = append(dice, r.Dice)
			if math.IsNaN(r.HD95) {
				rep.Mean.HD95Excluded[k]++
				continue
			}
			hd = append(hd, r.HD95)
		}
		rep.Mean.Dice[k] = stat.Mean(dice, nil)
		rep.Mean.HD95[k] = nil
		if len(hd) > 0 {
			rep.Mean.HD95[k] = evalFinite(stat.Mean(hd, nil))
		}
		rep.SD.Dice[k], rep.SD.HD95[k] = sampleSD(dice), sampleSD(hd)
	}

	printEvalTable(stdout, &rep, results)
	var extra []string
	for n := range preds {
		if _, ok := refs[n]; !ok {
			extra = append(extra, n)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		fmt.Fprintf(stdout, "note: %d prediction(s) without a reference ignored: %s\n", len(extra), strings.Join(extra, ", "))
	}
	if labelNames != nil && *labelsFile == "" {
		fmt.Fprintf(stdout, "note: classes named by %s (--labels to choose another)\n", namesFrom)
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(&rep, "", "  ")
		if err != nil {
			return fmt.Errorf("--json %s: %w", *jsonOut, err)
		}
		if err := evalWriteFile(*jsonOut, append(b, '\n')); err != nil {
			return fmt.Errorf("--json %s: %w", *jsonOut, err)
		}
	}
	return nil
}

// evalFinite returns &v, or nil for NaN (JSON has no NaN).
func evalFinite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// evalLabelFiles lists the .nii and .nii.gz files of dir by case name (the file
// name without the extension). flag names the flag in errors.
func evalLabelFiles(dir, flag string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	out := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		var base string
		switch {
		case strings.HasSuffix(name, ".nii.gz"):
			base = strings.TrimSuffix(name, ".nii.gz")
		case strings.HasSuffix(name, ".nii"):
			base = strings.TrimSuffix(name, ".nii")
		default:
			continue
		}
		path := filepath.Join(dir, name)
		if prev, dup := out[base]; dup {
			return nil, fmt.Errorf("%s: case %s is there twice: %s and %s", flag, base, prev, path)
		}
		out[base] = path
	}
	return out, nil
}

// evalClassNames returns the label names of the dataset.json given by
// --labels or, without it, of the one above a Decathlon labelsTr or labelsTs
// folder ref (nil if there is none), and says where they came from.
func evalClassNames(labelsFile, ref string) ([]string, string, error) {
	if labelsFile != "" {
		names, err := dataset.ReadLabels(labelsFile)
		if err != nil {
			return nil, "", fmt.Errorf("--labels: %w", err)
		}
		return names, labelsFile, nil
	}
	ref = filepath.Clean(ref)
	if b := filepath.Base(ref); b != "labelsTr" && b != "labelsTs" {
		return nil, "", nil
	}
	path := filepath.Join(filepath.Dir(ref), "dataset.json")
	if _, err := os.Stat(path); err != nil {
		return nil, "", nil
	}
	names, err := dataset.ReadLabels(path)
	if err != nil {
		return nil, "", fmt.Errorf("%w\n(the dataset.json above --ref names the classes; --labels chooses another)", err)
	}
	return names, path, nil
}

// evalReadLabels reads a single-channel label map and checks that every value
// is an integer in 0..255 (below n when n > 0; limit says where n comes from).
func evalReadLabels(path string, n int, limit string) (*nifti.Volume, []uint8, error) {
	v, err := nifti.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if v.Shape[0] != 1 {
		return nil, nil, fmt.Errorf("%s: a label map has one channel, this has %d (shape %v)", path, v.Shape[0], v.Shape)
	}
	labels := make([]uint8, len(v.Data))
	for i, f := range v.Data {
		if !(f >= 0 && f <= 255) || f != float32(math.Trunc(float64(f))) {
			return nil, nil, fmt.Errorf("%s: voxel %d holds %v, not a label (an integer 0..255)", path, i, f)
		}
		if n > 0 && int(f) >= n {
			return nil, nil, fmt.Errorf("%s: label %d at voxel %d, but %s allows 0..%d", path, int(f), i, limit, n-1)
		}
		labels[i] = uint8(f)
	}
	return v, labels, nil
}

// evalCaseFiles scores one prediction against its reference: classes 1..n-1
// when n > 0, else 1..the largest label of either map. It returns the
// results and that largest label.
func evalCaseFiles(predPath, refPath string, n int, limit string) ([]metrics.Result, int, error) {
	ref, rl, err := evalReadLabels(refPath, n, limit)
	if err != nil {
		return nil, 0, err
	}
	pred, pl, err := evalReadLabels(predPath, n, limit)
	if err != nil {
		return nil, 0, err
	}
	if pred.Shape != ref.Shape {
		return nil, 0, fmt.Errorf("prediction %s has shape %v (C, D, H, W) but reference %s has %v", predPath, pred.Shape, refPath, ref.Shape)
	}
	if pa, ra := pred.Affine(), ref.Affine(); !pa.Approx(ra, affineTol) {
		return nil, 0, fmt.Errorf("prediction %s and reference %s have different voxel-to-world affines:\n  prediction %v\n  reference  %v", predPath, refPath, pa, ra)
	}
	top := 0
	for i := range rl {
		top = max(top, int(rl[i]), int(pl[i]))
	}
	last := top
	if n > 0 {
		last = n - 1
	}
	classes := make([]int, 0, last)
	for c := 1; c <= last; c++ {
		classes = append(classes, c)
	}
	shape := [3]int{ref.Shape[1], ref.Shape[2], ref.Shape[3]}
	rs, err := metrics.Compare(pl, rl, shape, ref.Header.SpacingDHW(), classes)
	if err != nil {
		return nil, 0, fmt.Errorf("%s against %s: %w", predPath, refPath, err)
	}
	return rs, top, nil
}

func printEvalTable(w io.Writer, rep *evalReport, results [][]metrics.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// Numbers align right; names are padded here so they align left.
	width := len("case")
	for _, ec := range rep.Cases {
		width = max(width, len(ec.Case))
	}
	fmt.Fprintf(tw, "%-*s\t", width, "case")
	for _, c := range rep.Classes {
		fmt.Fprintf(tw, "dice %s\thd95 %s (mm)\t", rep.className(c), rep.className(c))
	}
	fmt.Fprintln(tw)
	for i, ec := range rep.Cases {
		fmt.Fprintf(tw, "%-*s\t", width, ec.Case)
		for _, c := range rep.Classes {
			r := results[i][c-1]
			fmt.Fprintf(tw, "%.4f\t%s\t", r.Dice, evalFmtHD(evalFinite(r.HD95)))
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "%-*s\t", width, "mean")
	for _, c := range rep.Classes {
		k := strconv.Itoa(c)
		fmt.Fprintf(tw, "%.4f\t%s\t", rep.Mean.Dice[k], evalFmtHD(rep.Mean.HD95[k]))
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "%-*s\t", width, "sd")
	for _, c := range rep.Classes {
		k := strconv.Itoa(c)
		dice := "-"
		if v := rep.SD.Dice[k]; v != nil {
			dice = strconv.FormatFloat(*v, 'f', 4, 64)
		}
		fmt.Fprintf(tw, "%s\t%s\t", dice, evalFmtHD(rep.SD.HD95[k]))
	}
	fmt.Fprintln(tw)
	tw.Flush()
	for _, c := range rep.Classes {
		if n := rep.Mean.HD95Excluded[strconv.Itoa(c)]; n > 0 {
			fmt.Fprintf(w, "hd95 mean of class %s leaves out %d of %d case(s) where only one of prediction and reference has the class (HD95 undefined, shown as -)\n", rep.className(c), n, len(rep.Cases))
		}
	}
}

// sampleSD is the standard deviation of v with n−1 in the denominator, or
// nil for fewer than two values.
func sampleSD(v []float64) *float64 {
	if len(v) < 2 {
		return nil
	}
	return evalFinite(stat.StdDev(v, nil))
}

func evalFmtHD(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 2, 64)
}

// evalWriteFile writes b to a temporary file next to path and renames it
// into place, so readers never see a partial file.
func evalWriteFile(path string, b []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = io.Copy(f, bytes.NewReader(b)); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
