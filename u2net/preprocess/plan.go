// Package preprocess turns the cases of a dataset into network inputs and
// network outputs back into the images' geometry.
//
// A Plan, computed once from a dataset's training cases and stored with the
// model, fixes every step: crop to the region where any channel is
// non-zero, intensity normalisation (CT: clip to the dataset's foreground
// 0.5/99.5 percentiles and z-score with its foreground mean and standard
// deviation; other modalities: per-image z-score over the non-zero region),
// and resampling to the target spacing (trilinear for images, nearest
// neighbour for labels). Applying a plan is deterministic, and the Geometry
// it records lets predictions be resampled back and un-cropped into the
// original image grid. Preprocessed cases can be cached on disk.
//
// Spacings and shapes are in tensor order (D, H, W), i.e. (z, y, x).
package preprocess

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/u2net-vk/u2net/u2net/dataset"
	"github.com/u2net-vk/u2net/u2net/internal/par"
	"github.com/u2net-vk/u2net/u2net/nifti"
)

// PlanVersion is the version of the preprocessing a Plan describes; plans of
// another version are refused.
const PlanVersion = 1

// Normalisation schemes.
const (
	SchemeCT     = "ct"     // clip to dataset percentiles, z-score with dataset statistics
	SchemeZScore = "zscore" // per-image z-score over the non-zero region
)

// Plan is the preprocessing of one domain. It is JSON-serialisable and
// stored in the model file.
type Plan struct {
	Version    int      `json:"version"`
	Domain     string   `json:"domain"`
	Modalities []string `json:"modalities"`
	Labels     []string `json:"labels"`

	// TargetSpacing is the voxel size (D, H, W) in mm every case is
	// resampled to.
	TargetSpacing [3]float64 `json:"target_spacing"`
	// Anisotropic reports that the low-resolution axis's spacing was set by
	// the 10th-percentile rule for strongly anisotropic data.
	Anisotropic bool `json:"anisotropic,omitempty"`
	// MedianShape is the median (D, H, W) of the training cases after
	// cropping and resampling, a guide for the patch size.
	MedianShape [3]int `json:"median_shape"`
	// Patch is the window the model was trained with (train records it in
	// the model's plans; zero before): prediction slides it by default, so
	// that the instance norms see windows like those of training.
	Patch [3]int `json:"patch,omitempty"`
	// KeepLargest lists the classes whose largest connected component
	// alone prediction keeps by default: those for which that raised the
	// mean Dice of the validation cases when train last saved the model.
	KeepLargest []int `json:"keep_largest,omitempty"`

	Normalization []ChannelNorm `json:"normalization"` // one per modality
}

// ChannelNorm is the intensity normalisation of one input channel.
type ChannelNorm struct {
	Scheme string `json:"scheme"`
	// Dataset statistics of the foreground (label > 0) intensities; used by
	// SchemeCT only.
	ClipLow  float64 `json:"clip_low,omitempty"`
	ClipHigh float64 `json:"clip_high,omitempty"`
	Mean     float64 `json:"mean,omitempty"`
	Std      float64 `json:"std,omitempty"`
}

// PlanOptions tune NewPlan.
type PlanOptions struct {
	// SamplesPerCase bounds the foreground intensities each case contributes
	// to the CT statistics (taken at an even stride); 0 means 20000.
	SamplesPerCase int
	// Workers is how many cases are read at once (0: one); the plan is the
	// same for any number.
	Workers int
	// CacheDir, when set, keeps the plan there under a key of the options
	// and the training cases' files (paths, sizes, modification times), so
	// that planning unchanged data again reads no image.
	CacheDir string
}

// Validate checks a plan read from a model file.
func (p *Plan) Validate() error {
	if p.Version != PlanVersion {
		return fmt.Errorf("preprocess: plan version %d; this program reads version %d", p.Version, PlanVersion)
	}
	if len(p.Modalities) == 0 || len(p.Normalization) != len(p.Modalities) {
		return fmt.Errorf("preprocess: plan for %q: %d modalities but %d normalisations", p.Domain, len(p.Modalities), len(p.Normalization))
	}
	for i, s := range p.TargetSpacing {
		if !(s > 0) || math.IsInf(s, 0) {
			return fmt.Errorf("preprocess: plan for %q: target spacing %v: axis %d is not a positive number", p.Domain, p.TargetSpacing, i)
		}
	}
	if p.Patch != [3]int{} && (p.Patch[0] <= 0 || p.Patch[1] <= 0 || p.Patch[2] <= 0) {
		return fmt.Errorf("preprocess: plan for %q: patch %v: every axis must be positive", p.Domain, p.Patch)
	}
	for _, c := range p.KeepLargest {
		if c < 1 || (len(p.Labels) > 0 && c >= len(p.Labels)) || c > 255 {
			return fmt.Errorf("preprocess: plan for %q: keep_largest names class %d, not a foreground class", p.Domain, c)
		}
	}
	for i, n := range p.Normalization {
		switch n.Scheme {
		case SchemeZScore:
		case SchemeCT:
			if !(n.Std > 0) || !(n.ClipHigh >= n.ClipLow) || math.IsNaN(n.Mean) || math.IsInf(n.Mean, 0) || math.IsInf(n.Std, 0) {
				return fmt.Errorf("preprocess: plan for %q: channel %d: CT statistics %+v are invalid", p.Domain, i, n)
			}
		default:
			return fmt.Errorf("preprocess: plan for %q: channel %d: unknown normalisation scheme %q", p.Domain, i, n.Scheme)
		}
	}
	return nil
}

// isCT reports whether a modality name denotes CT.
func isCT(modality string) bool { return strings.EqualFold(strings.TrimSpace(modality), "CT") }

// caseStats is what planning takes from one training case.
type caseStats struct {
	spacing [3]float64
	shape   [3]int      // of the non-zero box
	fg      [][]float64 // sampled foreground intensities per CT channel
	err     error
}

// NewPlan computes the plan of a dataset from its training cases, or takes
// it from opt.CacheDir.
func NewPlan(ds *dataset.Dataset, opt PlanOptions) (*Plan, error) {
	if opt.SamplesPerCase <= 0 {
		opt.SamplesPerCase = 20000
	}
	if len(ds.Training) == 0 {
		return nil, fmt.Errorf("preprocess: dataset %s has no training cases", ds.Root)
	}
	var path string
	if opt.CacheDir != "" {
		key, err := planKey(ds, opt)
		if err != nil {
			return nil, err
		}
		path = filepath.Join(opt.CacheDir, safeName(ds.Name), "plan-"+key+".json")
		if p, err := readPlan(path); err == nil && p.Domain == ds.Name {
			return p, nil
		}
	}
	p, err := computePlan(ds, opt)
	if err != nil {
		return nil, err
	}
	if path != "" {
		if err := writeFileAtomic(path, func(w io.Writer) error { return json.NewEncoder(w).Encode(p) }); err != nil {
			return nil, fmt.Errorf("preprocess: caching the plan of %s: %w", ds.Root, err)
		}
	}
	return p, nil
}

// planKey hashes what a plan depends on: the plan version, the options and
// every training case's files.
func planKey(ds *dataset.Dataset, opt PlanOptions) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "plan\x00%d\x00%d\x00%s\x00%q\x00%q\x00", PlanVersion, opt.SamplesPerCase, ds.Name, ds.Modalities, ds.Labels)
	for _, c := range ds.Training {
		io.WriteString(h, c.ID+"\x00")
		if err := hashFile(h, c.ID, c.Image); err != nil {
			return "", err
		}
		if err := hashFile(h, c.ID, c.Label); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

func readPlan(path string) (*Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// computePlan reads every training case, opt.Workers at a time, and
// combines their statistics in the dataset's order.
func computePlan(ds *dataset.Dataset, opt PlanOptions) (*Plan, error) {
	nc := len(ds.Modalities)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	workers := max(opt.Workers, 1)
	stats := par.Ordered(ctx, 0, len(ds.Training), workers, workers, func(i int) caseStats {
		s, err := ds.Load(ds.Training[i])
		if err != nil {
			return caseStats{err: err}
		}
		box, _ := nonZeroBox(s.Image.Data, s.Image.Shape)
		cs := caseStats{spacing: s.Image.Header.SpacingDHW(), shape: box.Shape(), fg: make([][]float64, nc)}
		for ch := range nc {
			if isCT(ds.Modalities[ch]) {
				cs.fg[ch] = sampleForeground(s.Image.Channel(ch), s.Label, opt.SamplesPerCase)
			}
		}
		return cs
	})
	fg := make([][]float64, nc) // sampled foreground intensities per CT channel
	var spacings [][3]float64
	var shapes [][3]int
	for cs := range stats {
		if cs.err != nil {
			return nil, cs.err
		}
		spacings = append(spacings, cs.spacing)
		shapes = append(shapes, cs.shape)
		for ch := range nc {
			fg[ch] = append(fg[ch], cs.fg[ch]...)
		}
	}
	p := &Plan{
		Version:    PlanVersion,
		Domain:     ds.Name,
		Modalities: slices.Clone(ds.Modalities),
		Labels:     slices.Clone(ds.Labels),
	}
	p.TargetSpacing, p.Anisotropic = targetSpacing(spacings, shapes)
	var rs [3][]float64
	for i := range shapes {
		r := ResampledShape(shapes[i], spacings[i], p.TargetSpacing)
		for a := range 3 {
			rs[a] = append(rs[a], float64(r[a]))
		}
	}
	for a := range 3 {
		p.MedianShape[a] = int(math.Round(percentile(rs[a], 50)))
	}
	p.Normalization = make([]ChannelNorm, nc)
	for ch := range nc {
		if !isCT(ds.Modalities[ch]) {
			p.Normalization[ch] = ChannelNorm{Scheme: SchemeZScore}
			continue
		}
		v := fg[ch]
		if len(v) == 0 {
			return nil, fmt.Errorf("preprocess: dataset %s: channel %d (CT): no training case has foreground voxels to compute intensity statistics from", ds.Root, ch)
		}
		mean, std := meanStd(v)
		if !(std > 1e-8) {
			std = 1
		}
		p.Normalization[ch] = ChannelNorm{Scheme: SchemeCT, ClipLow: percentile(v, 0.5), ClipHigh: percentile(v, 99.5), Mean: mean, Std: std}
	}
	return p, nil
}

// sampleForeground returns up to limit intensities of the voxels with a
// non-zero label, taken at an even stride so the result is deterministic.
func sampleForeground(img []float32, label []uint8, limit int) []float64 {
	var idx []int
	for i, l := range label {
		if l > 0 {
			idx = append(idx, i)
		}
	}
	n := min(len(idx), limit)
	out := make([]float64, n)
	for k := range n {
		out[k] = float64(img[idx[k*len(idx)/n]])
	}
	return out
}

// targetSpacing returns the per-axis median spacing; for strongly
// anisotropic data (nnU-Net's rule: the coarsest axis's median spacing is
// more than 3 times the larger of the other two, and its median size is
// less than a third of the smaller of the other two) the coarsest axis gets
// the 10th percentile of its spacings instead, kept above the other axes'.
func targetSpacing(spacings [][3]float64, shapes [][3]int) ([3]float64, bool) {
	var t [3]float64
	var size [3]float64
	var per [3][]float64
	for a := range 3 {
		var sz []float64
		for i := range spacings {
			per[a] = append(per[a], spacings[i][a])
			sz = append(sz, float64(shapes[i][a]))
		}
		t[a] = percentile(per[a], 50)
		size[a] = percentile(sz, 50)
	}
	worst := 0
	for a := 1; a < 3; a++ {
		if t[a] > t[worst] {
			worst = a
		}
	}
	otherSp, otherSize := 0.0, math.Inf(1)
	for a := range 3 {
		if a != worst {
			otherSp = math.Max(otherSp, t[a])
			otherSize = math.Min(otherSize, size[a])
		}
	}
	if t[worst] > 3*otherSp && size[worst]*3 < otherSize {
		s := percentile(per[worst], 10)
		if s < otherSp {
			s = otherSp + 1e-5
		}
		t[worst] = s
		return t, true
	}
	return t, false
}

// percentile returns the q-th percentile (0..100) of v by linear
// interpolation between order statistics; v is not modified.
func percentile(v []float64, q float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN()
	}
	pos := q / 100 * float64(len(s)-1)
	i := int(math.Floor(pos))
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	f := pos - float64(i)
	return s[i] + f*(s[i+1]-s[i])
}

func meanStd(v []float64) (mean, std float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(v)))
}

// Geometry records where a preprocessed case came from, so that outputs can
// be mapped back.
type Geometry struct {
	Shape     [3]int       `json:"shape"`     // original (D, H, W)
	Spacing   [3]float64   `json:"spacing"`   // original voxel size (D, H, W)
	Crop      Box          `json:"crop"`      // non-zero box in the original grid
	Resampled [3]int       `json:"resampled"` // shape after resampling
	Affine    nifti.Affine `json:"affine"`    // the original image's affine
}

// Case is a preprocessed case: network-ready intensities and labels.
type Case struct {
	ID       string
	Shape    [4]int    // C, D, H, W
	Image    []float32 // C·D·H·W
	Label    []uint8   // D·H·W; nil when the case has no label
	Geometry Geometry
}

// Voxels returns the number of voxels of one channel.
func (c *Case) Voxels() int { return c.Shape[1] * c.Shape[2] * c.Shape[3] }

// Apply preprocesses a loaded case (image and, when present, label).
func (p *Plan) Apply(s *dataset.Sample) (*Case, error) {
	c, err := p.apply(s.Image, s.Label)
	if err != nil {
		return nil, fmt.Errorf("case %s: %w", s.Case.ID, err)
	}
	c.ID = s.Case.ID
	return c, nil
}

// ApplyImage preprocesses an image without a label, for prediction.
func (p *Plan) ApplyImage(img *nifti.Volume) (*Case, error) { return p.apply(img, nil) }

func (p *Plan) apply(img *nifti.Volume, label []uint8) (*Case, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	nc := img.Shape[0]
	if nc != len(p.Modalities) {
		return nil, fmt.Errorf("preprocess: image has %d channel(s); the plan for %q expects %d (%s)", nc, p.Domain, len(p.Modalities), strings.Join(p.Modalities, ", "))
	}
	shape := [3]int{img.Shape[1], img.Shape[2], img.Shape[3]}
	n := shape[0] * shape[1] * shape[2]
	if len(img.Data) != nc*n {
		return nil, fmt.Errorf("preprocess: image shape %v needs %d values, got %d", img.Shape, nc*n, len(img.Data))
	}
	if label != nil && len(label) != n {
		return nil, fmt.Errorf("preprocess: label has %d voxels, the image %d", len(label), n)
	}
	box, mask := nonZeroBox(img.Data, img.Shape)
	g := Geometry{Shape: shape, Spacing: img.Header.SpacingDHW(), Crop: box, Affine: img.Affine()}
	cs := box.Shape()
	cn := cs[0] * cs[1] * cs[2]
	cropped := cropChannels(img.Data, nc, shape, box)
	cmask := cropChannels(mask, 1, shape, box)
	for ch := range nc {
		p.normalize(ch, cropped[ch*cn:(ch+1)*cn], cmask)
	}
	g.Resampled = ResampledShape(cs, g.Spacing, p.TargetSpacing)
	rn := g.Resampled[0] * g.Resampled[1] * g.Resampled[2]
	out := &Case{Shape: [4]int{nc, g.Resampled[0], g.Resampled[1], g.Resampled[2]}, Image: make([]float32, nc*rn), Geometry: g}
	for ch := range nc {
		if err := resampleLinearInto(out.Image[ch*rn:(ch+1)*rn], cropped[ch*cn:(ch+1)*cn], cs, g.Resampled); err != nil {
			return nil, err
		}
	}
	if label != nil {
		var err error
		out.Label, err = ResampleNearest(cropChannels(label, 1, shape, box), cs, g.Resampled)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// normalize rescales one cropped channel in place.
func (p *Plan) normalize(ch int, v []float32, mask []bool) {
	n := p.Normalization[ch]
	if n.Scheme == SchemeCT {
		lo, hi := float32(n.ClipLow), float32(n.ClipHigh)
		mean, inv := n.Mean, 1/n.Std
		for i, x := range v {
			x = min(max(x, lo), hi)
			v[i] = float32((float64(x) - mean) * inv)
		}
		return
	}
	var sum, sq float64
	var cnt int
	for i, x := range v {
		if mask[i] {
			sum += float64(x)
			cnt++
		}
	}
	if cnt == 0 {
		clear(v)
		return
	}
	mean := sum / float64(cnt)
	for i, x := range v {
		if mask[i] {
			d := float64(x) - mean
			sq += d * d
		}
	}
	std := math.Sqrt(sq / float64(cnt))
	inv := 1 / math.Max(std, 1e-8)
	for i, x := range v {
		if mask[i] {
			v[i] = float32((float64(x) - mean) * inv)
		} else {
			v[i] = 0
		}
	}
}

// RestoreProbabilities maps class probabilities (or any per-class scores)
// of shape [classes, g.Resampled...] back to the original grid: trilinear
// resampling to the cropped size, then un-cropping; voxels outside the crop
// get probability 1 for the background (class 0) and 0 for the others.
func RestoreProbabilities(probs []float32, classes int, g Geometry) ([]float32, error) {
	rn := g.Resampled[0] * g.Resampled[1] * g.Resampled[2]
	if classes < 1 || len(probs) != classes*rn {
		return nil, fmt.Errorf("preprocess: restore: %d classes of shape %v need %d values, got %d", classes, g.Resampled, classes*rn, len(probs))
	}
	if err := g.check(); err != nil {
		return nil, err
	}
	cs := g.Crop.Shape()
	cn := cs[0] * cs[1] * cs[2]
	cropped := make([]float32, classes*cn)
	for k := range classes {
		if err := resampleLinearInto(cropped[k*cn:(k+1)*cn], probs[k*rn:(k+1)*rn], g.Resampled, cs); err != nil {
			return nil, err
		}
	}
	return uncropChannels(cropped, classes, g.Shape, g.Crop, func(ch int) float32 {
		if ch == 0 {
			return 1
		}
		return 0
	}), nil
}

// RestoreLabels maps a label map of shape g.Resampled back to the original
// grid: nearest-neighbour resampling to the cropped size, then un-cropping
// with background (0) outside the crop.
func RestoreLabels(labels []uint8, g Geometry) ([]uint8, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	r, err := ResampleNearest(labels, g.Resampled, g.Crop.Shape())
	if err != nil {
		return nil, err
	}
	return uncropChannels(r, 1, g.Shape, g.Crop, func(int) uint8 { return 0 }), nil
}

func (g Geometry) check() error {
	for a := range 3 {
		if g.Crop.Lo[a] < 0 || g.Crop.Hi[a] > g.Shape[a] || g.Crop.Lo[a] >= g.Crop.Hi[a] || g.Resampled[a] < 1 {
			return errors.New("preprocess: restore: geometry's crop box or shapes are inconsistent")
		}
	}
	return nil
}
