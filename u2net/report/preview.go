// Package report draws the pictures a person looks at to judge a model:
// Preview, three orthogonal slices of an image with its label map overlaid,
// and Progress, the training curves from the training loop's metrics.jsonl
// (whose records, Record, this package defines, reads and writes).
//
// Files are PNGs written atomically (a temporary file renamed into place),
// so a viewer polling a file during training never sees a partial one.
package report

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// Panel size limits of Preview, in pixels: the tallest panel is scaled into
// [minPanel, maxPanel], the three together at most maxWidth wide.
const (
	minPanel = 192
	maxPanel = 512
	maxWidth = 1600
	gap      = 4 // pixels between panels
)

// overlayAlpha is the opacity of a label's fill; its outline is opaque.
const overlayAlpha = 0.4

// palette holds distinct colours for labels 1, 2, ...; it repeats after its
// end (label l gets palette[(l−1) mod len]).
var palette = []color.RGBA{
	{230, 25, 75, 255},   // red
	{60, 180, 75, 255},   // green
	{255, 225, 25, 255},  // yellow
	{0, 130, 200, 255},   // blue
	{245, 130, 48, 255},  // orange
	{145, 30, 180, 255},  // purple
	{70, 240, 240, 255},  // cyan
	{240, 50, 230, 255},  // magenta
	{210, 245, 60, 255},  // lime
	{250, 190, 212, 255}, // pink
}

// LabelColor returns the overlay colour of label l (> 0).
func LabelColor(l uint8) color.RGBA { return palette[(int(l)+len(palette)-1)%len(palette)] }

// Preview writes to path a PNG of three orthogonal slices of img (one
// channel, [D][H][W] with W fastest, voxel size spacing (D, H, W) in mm)
// side by side: the axial slice (rows H, columns W), the coronal one (rows D
// upwards, columns W) and the sagittal one (rows D upwards, columns H), all
// through the centroid of the foreground (labels > 0), or through the
// volume's centre when labels is nil or empty of foreground. Grey levels
// span the image's 1st to 99th percentile; labels are overlaid in
// translucent colours (LabelColor) with opaque outlines. Pixels are square
// in millimetres, so anisotropic volumes keep their proportions.
func Preview(path string, img []float32, labels []uint8, shape [3]int, spacing [3]float64) error {
	pic, err := PreviewImage(img, labels, shape, spacing)
	if err != nil {
		return fmt.Errorf("report: preview %s: %w", path, err)
	}
	return writeAtomic(path, func(w io.Writer) error { return png.Encode(w, pic) })
}

// PreviewImage returns the picture Preview writes.
func PreviewImage(img []float32, labels []uint8, shape [3]int, spacing [3]float64) (*image.RGBA, error) {
	n := shape[0] * shape[1] * shape[2]
	for a := range 3 {
		if shape[a] < 1 {
			return nil, fmt.Errorf("shape %v: every axis needs at least one voxel", shape)
		}
		if !(spacing[a] > 0) || math.IsInf(spacing[a], 0) {
			return nil, fmt.Errorf("spacing %v: want finite positive voxel sizes", spacing)
		}
	}
	if len(img) != n {
		return nil, fmt.Errorf("image has %d voxels, shape %v needs %d", len(img), shape, n)
	}
	if labels != nil && len(labels) != n {
		return nil, fmt.Errorf("labels have %d voxels, shape %v needs %d", len(labels), shape, n)
	}
	lo, hi := window(img)
	centre := centroid(labels, shape)

	// Millimetres per output pixel: the finest voxel size, adjusted so the
	// tallest panel fits [minPanel, maxPanel] and the row fits maxWidth.
	ext := [3]float64{float64(shape[0]) * spacing[0], float64(shape[1]) * spacing[1], float64(shape[2]) * spacing[2]}
	mmpp := min(spacing[0], spacing[1], spacing[2])
	tallest := max(ext[0], ext[1])
	if tallest/mmpp > maxPanel {
		mmpp = tallest / maxPanel
	}
	if tallest/mmpp < minPanel {
		mmpp = tallest / minPanel
	}
	if wide := ext[2] + ext[2] + ext[1]; wide/mmpp > maxWidth-2*gap {
		mmpp = wide / (maxWidth - 2*gap)
	}
	px := func(mm float64) int { return max(1, int(math.Round(mm/mmpp))) }

	// Each panel: which tensor axes its rows and columns run along, whether
	// rows run upwards, and the fixed voxel of the third axis.
	type panel struct {
		rowAxis, colAxis, fixAxis int
		up                        bool
	}
	panels := []panel{{1, 2, 0, false}, {0, 2, 1, true}, {0, 1, 2, true}}
	width, height := 0, 0
	for i, p := range panels {
		if i > 0 {
			width += gap
		}
		width += px(ext[p.colAxis])
		height = max(height, px(ext[p.rowAxis]))
	}
	out := image.NewRGBA(image.Rect(0, 0, width, height))
	for i := range out.Pix {
		if i%4 == 3 {
			out.Pix[i] = 255 // opaque black background
		}
	}
	x0 := 0
	for _, p := range panels {
		rows, cols := px(ext[p.rowAxis]), px(ext[p.colAxis])
		// lab holds the panel's labels for the outline pass.
		lab := make([]uint8, rows*cols)
		for r := range rows {
			for c := range cols {
				var pos [3]float64 // voxel coordinates (centre of voxel i is i)
				pos[p.fixAxis] = float64(centre[p.fixAxis])
				rr := r
				if p.up {
					rr = rows - 1 - r
				}
				pos[p.rowAxis] = (float64(rr)+0.5)*mmpp/spacing[p.rowAxis] - 0.5
				pos[p.colAxis] = (float64(c)+0.5)*mmpp/spacing[p.colAxis] - 0.5
				v := trilinearOnSlice(img, shape, pos)
				g := uint8(math.Round(255 * math.Min(1, math.Max(0, (v-lo)/(hi-lo)))))
				o := out.PixOffset(x0+c, r)
				out.Pix[o], out.Pix[o+1], out.Pix[o+2] = g, g, g
				if labels != nil {
					lab[r*cols+c] = labels[nearest(shape, pos)]
				}
			}
		}
		if labels != nil {
			for r := range rows {
				for c := range cols {
					l := lab[r*cols+c]
					if l == 0 {
						continue
					}
					edge := r == 0 || r == rows-1 || c == 0 || c == cols-1 ||
						lab[(r-1)*cols+c] != l || lab[(r+1)*cols+c] != l || lab[r*cols+c-1] != l || lab[r*cols+c+1] != l
					a := overlayAlpha
					if edge {
						a = 1
					}
					col := LabelColor(l)
					o := out.PixOffset(x0+c, r)
					out.Pix[o] = blend(out.Pix[o], col.R, a)
					out.Pix[o+1] = blend(out.Pix[o+1], col.G, a)
					out.Pix[o+2] = blend(out.Pix[o+2], col.B, a)
				}
			}
		}
		x0 += cols + gap
	}
	return out, nil
}

func blend(under, over uint8, a float64) uint8 {
	return uint8(math.Round(float64(under)*(1-a) + float64(over)*a))
}

// window returns the 1st and 99th percentiles of the finite values of img,
// from an evenly strided sample of at most 2^20 voxels; hi > lo always.
func window(img []float32) (lo, hi float64) {
	step := max(1, len(img)>>20)
	s := make([]float32, 0, len(img)/step+1)
	for i := 0; i < len(img); i += step {
		if v := img[i]; !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) {
			s = append(s, v)
		}
	}
	if len(s) == 0 {
		return 0, 1
	}
	slices.Sort(s)
	lo = float64(s[int(0.01*float64(len(s)-1))])
	hi = float64(s[int(math.Ceil(0.99*float64(len(s)-1)))])
	if !(hi > lo) {
		hi = lo + 1
	}
	return lo, hi
}

// centroid returns the voxel nearest the mean position of the foreground,
// or the volume's centre when there is none.
func centroid(labels []uint8, shape [3]int) [3]int {
	var sum [3]float64
	var n float64
	i := 0
	for z := range shape[0] {
		for y := range shape[1] {
			for x := range shape[2] {
				if labels != nil && labels[i] != 0 {
					sum[0] += float64(z)
					sum[1] += float64(y)
					sum[2] += float64(x)
					n++
				}
				i++
			}
		}
	}
	if n == 0 {
		return [3]int{shape[0] / 2, shape[1] / 2, shape[2] / 2}
	}
	return [3]int{int(math.Round(sum[0] / n)), int(math.Round(sum[1] / n)), int(math.Round(sum[2] / n))}
}

// nearest returns the index of the voxel nearest pos (clamped).
func nearest(shape [3]int, pos [3]float64) int {
	var q [3]int
	for a := range 3 {
		q[a] = min(shape[a]-1, max(0, int(math.Round(pos[a]))))
	}
	return (q[0]*shape[1]+q[1])*shape[2] + q[2]
}

// trilinearOnSlice interpolates img at pos (clamped to the volume); pos lies
// on a voxel plane of one axis, so it is bilinear in effect. Non-finite
// voxels read as 0.
func trilinearOnSlice(img []float32, shape [3]int, pos [3]float64) float64 {
	var i0, i1 [3]int
	var f [3]float64
	for a := range 3 {
		p := math.Min(float64(shape[a]-1), math.Max(0, pos[a]))
		fl := math.Floor(p)
		i0[a] = int(fl)
		i1[a] = min(i0[a]+1, shape[a]-1)
		f[a] = p - fl
	}
	at := func(z, y, x int) float64 {
		v := float64(img[(z*shape[1]+y)*shape[2]+x])
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0
		}
		return v
	}
	var v float64
	for _, dz := range [2]int{0, 1} {
		wz := 1 - f[0]
		z := i0[0]
		if dz == 1 {
			wz, z = f[0], i1[0]
		}
		if wz == 0 {
			continue
		}
		for _, dy := range [2]int{0, 1} {
			wy := 1 - f[1]
			y := i0[1]
			if dy == 1 {
				wy, y = f[1], i1[1]
			}
			if wy == 0 {
				continue
			}
			v += wz * wy * ((1-f[2])*at(z, y, i0[2]) + f[2]*at(z, y, i1[2]))
		}
	}
	return v
}

// writeAtomic writes a file through fill into a temporary file next to path
// and renames it into place once complete.
func writeAtomic(path string, fill func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriter(f)
	if err = fill(bw); err != nil {
		return fmt.Errorf("report: writing %s: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("report: writing %s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("report: writing %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
