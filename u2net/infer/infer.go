// Package infer runs a segmentation network over a whole preprocessed volume
// by sliding a window of the network's patch size across it and stitching
// the per-window class probabilities together, the way nnU-Net does:
//
//   - windows are evenly spaced so that they cover the volume exactly, the
//     first flush with the start and the last flush with the end of each
//     axis, neighbours overlapping by at least Options.Overlap of the patch;
//   - each window's probabilities are weighted by a Gaussian importance map
//     (σ = patch/8 per axis, peak at the window centre) so that voxels near
//     a window's border, where the network sees little context, count less;
//   - optionally each window is also predicted mirrored along some axes and
//     the flipped-back probabilities averaged (test-time augmentation);
//   - a volume smaller than the patch on some axis is zero-padded
//     symmetrically (zero is the mean of a z-scored image) and the result
//     cropped back.
//
// The network is any Predictor, so the package knows nothing about models or
// devices. Memory is bounded by the output ([K][D][H][W] float32 plus one
// weight per voxel) and one batch of windows: windows are cut, predicted and
// accumulated a batch at a time.
package infer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/u2net-vk/u2net/u2net/internal/par"
)

// Predictor runs the network on n windows. batch holds n input windows of
// shape [C][patch[0]][patch[1]][patch[2]] one after another ([n][C][patch],
// W fastest); the result must be [n][K][patch]: class PROBABILITIES (each
// voxel's K values non-negative and summing to 1, e.g. a softmax), not
// logits. Wrap a network that returns logits with Softmax. out has the
// result's length and holds nothing Predict still needs: the predictor may
// write the result into it and return it, sparing an allocation per call,
// or return a slice of its own. The predictor may keep none of these
// slices after it returns. The returned slice is only read, but it is read
// while the predictor runs on the next windows: later calls must leave it
// unchanged until Predict hands it back as out.
type Predictor func(batch []float32, n int, patch [3]int, out []float32) ([]float32, error)

// Options control the sliding window.
type Options struct {
	// Patch is the window size (D, H, W), usually the network's training
	// patch. Each axis must be a multiple of Multiple, except with
	// WholeVolume, where it is only a lower bound.
	Patch [3]int
	// Overlap is the least fraction of the patch that neighbouring windows
	// share, in [0, 1): 0.5 (nnU-Net's default) places windows at most half a
	// patch apart.
	Overlap float64
	// Batch is the number of windows (mirrored copies included) passed to
	// the predictor at once; at least 1.
	Batch int
	// Mirror lists the axes (D, H, W) along which test-time mirroring may
	// flip: every combination of the allowed axes is predicted (8 for all
	// three) and the results averaged. None set: no mirroring.
	Mirror [3]bool
	// WholeVolume replaces the sliding window by a single window covering
	// the volume, padded up to at least Patch and to a multiple of Multiple
	// on each axis.
	WholeVolume bool
	// Multiple is what every window size must be divisible by (the network's
	// total stride per axis); zero entries mean 1.
	Multiple [3]int
}

// DefaultOptions returns the options nnU-Net infers with for a given patch:
// overlap 0.5, one window per call, mirroring along all three axes.
func DefaultOptions(patch [3]int) Options {
	return Options{Patch: patch, Overlap: 0.5, Batch: 1, Mirror: [3]bool{true, true, true}}
}

// Result is the stitched prediction.
type Result struct {
	Shape   [3]int    // D, H, W: the input's spatial shape
	Classes int       // K
	Probs   []float32 // [K][D][H][W]
	Labels  []uint8   // [D][H][W]: the argmax of Probs (lowest class on ties)
	Window  [3]int    // the window size used
	Windows int       // windows placed (each predicted once per flip)
}

// Window is the placement of one window: its first voxel, in the coordinates
// of the input volume (negative where the volume is padded).
type Window [3]int

// Plan returns the window size and the windows Predict would use for a
// volume of spatial shape shape.
func Plan(shape [3]int, opt Options) (size [3]int, windows []Window, err error) {
	if err := opt.check(); err != nil {
		return size, nil, err
	}
	for a := range 3 {
		if shape[a] < 1 {
			return size, nil, fmt.Errorf("infer: volume shape %v: every axis needs at least one voxel", shape)
		}
	}
	size = opt.Patch
	if opt.WholeVolume {
		for a := range 3 {
			m := max(opt.Multiple[a], 1)
			size[a] = (max(shape[a], opt.Patch[a]) + m - 1) / m * m
		}
	}
	var starts [3][]int
	for a := range 3 {
		starts[a] = axisStarts(shape[a], size[a], opt.Overlap)
	}
	for _, z := range starts[0] {
		for _, y := range starts[1] {
			for _, x := range starts[2] {
				windows = append(windows, Window{z, y, x})
			}
		}
	}
	return size, windows, nil
}

// axisStarts places windows of size p along an axis of n voxels: one
// window centred on the padded axis when n ≤ p, else the fewest windows with
// a step of at most p·(1−overlap), spread evenly with the last one ending at
// n.
func axisStarts(n, p int, overlap float64) []int {
	if n <= p {
		return []int{-(p - n) / 2}
	}
	step := math.Max(1, math.Floor(float64(p)*(1-overlap)))
	count := int(math.Ceil(float64(n-p)/step)) + 1
	out := make([]int, count)
	span := float64(n - p)
	for i := range count {
		out[i] = int(math.Round(span * float64(i) / float64(count-1)))
	}
	return out
}

func (o *Options) check() error {
	for a := range 3 {
		if o.Patch[a] < 1 {
			return fmt.Errorf("infer: patch %v: every axis needs at least one voxel", o.Patch)
		}
		if o.Multiple[a] < 0 {
			return fmt.Errorf("infer: multiple %v: want non-negative values", o.Multiple)
		}
		if m := max(o.Multiple[a], 1); !o.WholeVolume && o.Patch[a]%m != 0 {
			return fmt.Errorf("infer: patch %v is not divisible by the network's stride %v on axis %d", o.Patch, o.Multiple, a)
		}
	}
	if !(o.Overlap >= 0 && o.Overlap < 1) {
		return fmt.Errorf("infer: overlap %v: want a fraction in [0, 1)", o.Overlap)
	}
	if o.Batch < 1 {
		return fmt.Errorf("infer: batch %d: want at least 1", o.Batch)
	}
	return nil
}

// flips returns every subset of the allowed mirror axes, as bit masks
// (bit a set: flip axis a), the identity first.
func flips(mirror [3]bool) []int {
	out := []int{0}
	for a := range 3 {
		if !mirror[a] {
			continue
		}
		for _, f := range out {
			out = append(out, f|1<<a)
		}
	}
	return out
}

// Predict runs pred over the input volume of shape [C][D][H][W] and returns
// the class probabilities and labels for classes classes. It checks ctx
// between batches.
func Predict(ctx context.Context, input []float32, shape [4]int, classes int, pred Predictor, opt Options) (*Result, error) {
	if pred == nil {
		return nil, errors.New("infer: no predictor")
	}
	c := shape[0]
	sp := [3]int{shape[1], shape[2], shape[3]}
	if c < 1 {
		return nil, fmt.Errorf("infer: input shape %v: want at least one channel", shape)
	}
	if classes < 1 || classes > 256 {
		return nil, fmt.Errorf("infer: %d classes: want 1..256 (labels are uint8)", classes)
	}
	size, windows, err := Plan(sp, opt)
	if err != nil {
		return nil, err
	}
	vox := sp[0] * sp[1] * sp[2]
	if len(input) != c*vox {
		return nil, fmt.Errorf("infer: input shape %v needs %d values, got %d", shape, c*vox, len(input))
	}
	pvox := size[0] * size[1] * size[2]
	gauss := gaussian(size)
	fl := flips(opt.Mirror)

	acc := make([]float32, classes*vox)
	weight := make([]float32, vox)

	// A job is one (window, flip) pair; jobs are batched in order.
	type job struct {
		w    Window
		flip int
	}
	type batch struct {
		jobs []job
		in   []float32 // the jobs' windows, cut
		out  []float32 // their probabilities
	}
	// Three stages run at once, each handing its batches on in order: the
	// host cuts batch k+1 and stitches batch k−1 while the predictor runs
	// batch k, so that on a GPU the host's share overlaps the device's.
	// The sums are those of a serial run, bit for bit. Two input buffers
	// take turns between the cutter and the predictor.
	inputs := make(chan batch, 1)
	spare := make(chan []float32, 2)
	for range 2 {
		spare <- make([]float32, 0, opt.Batch*c*pvox)
	}
	stop := make(chan struct{}) // the predictor has quit
	go func() {
		defer close(inputs)
		var b batch
		for _, w := range windows {
			for _, f := range fl {
				if b.in == nil {
					select {
					case b.in = <-spare:
						b.in = b.in[:0]
					case <-stop:
						return
					}
				}
				b.in = cut(b.in, input, c, sp, w, size, f)
				b.jobs = append(b.jobs, job{w, f})
				if len(b.jobs) == opt.Batch {
					select {
					case inputs <- b:
					case <-stop:
						return
					}
					b = batch{}
				}
			}
		}
		if len(b.jobs) > 0 {
			select {
			case inputs <- b:
			case <-stop:
			}
		}
	}()
	stitch := make(chan batch, 1)
	stitched := make(chan struct{})
	wscale := float32(1) / float32(len(fl))
	// The results' buffers go round too, back to the predictor once
	// stitched: one being written, one waiting to be stitched, one being
	// stitched. (A new one per batch would cost more than its copy: its
	// memory is first touched, page by page, as the result is written.)
	outs := make(chan []float32, 3)
	for range cap(outs) {
		outs <- nil
	}
	go func() {
		defer close(stitched)
		for b := range stitch {
			for i, j := range b.jobs {
				accumulate(acc, weight, sp, classes, b.out[i*classes*pvox:(i+1)*classes*pvox], j.w, size, j.flip, gauss, wscale)
			}
			outs <- b.out
		}
	}()
	predictAll := func() error {
		for b := range inputs {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("infer: %w", err)
			}
			n := len(b.jobs)
			buf := <-outs
			if cap(buf) < n*classes*pvox {
				buf = make([]float32, opt.Batch*classes*pvox)
			}
			out, err := pred(b.in, n, size, buf[:n*classes*pvox])
			if err != nil {
				return fmt.Errorf("infer: predictor on %d windows of %v: %w", n, size, err)
			}
			if len(out) != n*classes*pvox {
				return fmt.Errorf("infer: predictor returned %d values for %d windows of %d classes × %v, want %d", len(out), n, classes, size, n*classes*pvox)
			}
			spare <- b.in
			b.in, b.out = nil, out
			stitch <- b
		}
		return nil
	}
	err = predictAll()
	close(stop)
	for range inputs { // until the cutter has returned
	}
	close(stitch)
	<-stitched
	if err != nil {
		return nil, err
	}

	labels := make([]uint8, vox)
	par.Ranges(vox, minPerWorker, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			inv := 1 / weight[i] // every voxel is covered by a window with weight > 0
			best, bestK := float32(math.Inf(-1)), 0
			for k := range classes {
				p := acc[k*vox+i] * inv
				acc[k*vox+i] = p
				if p > best {
					best, bestK = p, k
				}
			}
			labels[i] = uint8(bestK)
		}
	})
	return &Result{Shape: sp, Classes: classes, Probs: acc, Labels: labels, Window: size, Windows: len(windows)}, nil
}

// minPerWorker is the fewest voxels worth a goroutine of the host loops.
const minPerWorker = 1 << 14

// cut appends to dst the window at w of size size from the [c][shape] volume
// src, zero outside the volume, flipped along the axes in flip. The
// window's planes are filled in parallel.
func cut(dst, src []float32, c int, shape [3]int, w Window, size [3]int, flip int) []float32 {
	vox := shape[0] * shape[1] * shape[2]
	plane := size[1] * size[2]
	at := len(dst)
	dst = slices.Grow(dst, c*size[0]*plane)[:at+c*size[0]*plane]
	par.Ranges(c*size[0], max(1, minPerWorker/plane), func(lo, hi int) {
		for cz := lo; cz < hi; cz++ {
			ch, z := cz/size[0], cz%size[0]
			s := src[ch*vox : (ch+1)*vox]
			out := dst[at+cz*plane : at+(cz+1)*plane]
			gz := w[0] + flipIdx(z, size[0], flip&1 != 0)
			for y := range size[1] {
				gy := w[1] + flipIdx(y, size[1], flip&2 != 0)
				rowOK := gz >= 0 && gz < shape[0] && gy >= 0 && gy < shape[1]
				row := out[y*size[2] : (y+1)*size[2]]
				for x := range size[2] {
					gx := w[2] + flipIdx(x, size[2], flip&4 != 0)
					var v float32
					if rowOK && gx >= 0 && gx < shape[2] {
						v = s[(gz*shape[1]+gy)*shape[2]+gx]
					}
					row[x] = v
				}
			}
		}
	})
	return dst
}

func flipIdx(i, n int, flip bool) int {
	if flip {
		return n - 1 - i
	}
	return i
}

// accumulate adds the window's probabilities out ([classes][size], predicted
// on the input flipped by flip) into acc with the Gaussian weights times
// wscale, un-flipping them and dropping the voxels outside the volume.
// A window's planes go to different goroutines: each voxel of acc belongs
// to one plane, so the sums and their order are those of a serial loop.
func accumulate(acc, weight []float32, shape [3]int, classes int, out []float32, w Window, size [3]int, flip int, gauss []float32, wscale float32) {
	plane := size[1] * size[2]
	par.Ranges(size[0], max(1, minPerWorker/plane), func(lo, hi int) {
		accumulatePlanes(acc, weight, shape, classes, out, w, size, flip, gauss, wscale, lo, hi)
	})
}

// accumulatePlanes is accumulate over the window's planes z0..z1-1. It
// works a row at a time, over the row's part inside the volume (the same
// for every row), class by class: the index arithmetic and the bounds
// checks leave the inner loops, which cost three quarters of the host's
// share of a prediction. Every voxel still gets the same one addition
// per window, so the sums are the same.
func accumulatePlanes(acc, weight []float32, shape [3]int, classes int, out []float32, w Window, size [3]int, flip int, gauss []float32, wscale float32, z0, z1 int) {
	vox := shape[0] * shape[1] * shape[2]
	pvox := size[0] * size[1] * size[2]
	x0, x1 := max(0, -w[2]), min(size[2], shape[2]-w[2])
	if x0 >= x1 {
		return
	}
	flipX := flip&4 != 0
	g := make([]float32, x1-x0) // the row's weights
	for z := z0; z < z1; z++ {
		gz := w[0] + z
		if gz < 0 || gz >= shape[0] {
			continue
		}
		fz := flipIdx(z, size[0], flip&1 != 0)
		for y := range size[1] {
			gy := w[1] + y
			if gy < 0 || gy >= shape[1] {
				continue
			}
			fy := flipIdx(y, size[1], flip&2 != 0)
			row := (z*size[1] + y) * size[2]
			for i, v := range gauss[row+x0 : row+x1] {
				g[i] = v * wscale
			}
			// The network saw the flipped window, so output voxel f
			// belongs to window voxel (z, y, x).
			src := (fz*size[1] + fy) * size[2]
			dst := (gz*shape[1]+gy)*shape[2] + w[2] + x0
			wrow := weight[dst : dst+len(g)]
			for i, v := range g {
				wrow[i] += v
			}
			for k := range classes {
				a := acc[k*vox+dst : k*vox+dst+len(g)]
				o := out[k*pvox+src : k*pvox+src+size[2]]
				if flipX {
					// Window voxel x takes output voxel size[2]−1−x.
					o = o[size[2]-x1 : size[2]-x0]
					last := len(o) - 1
					for i, v := range g {
						a[i] += v * o[last-i]
					}
				} else {
					o = o[x0:x1]
					for i, v := range g {
						a[i] += v * o[i]
					}
				}
			}
		}
	}
}

// gaussian returns the importance map of a window: a separable Gaussian with
// σ = size/8 per axis centred on the window, scaled to peak 1. Its smallest
// value (about e^−24 at the corners) is still a normal float32, so every
// covered voxel gets a positive weight.
func gaussian(size [3]int) []float32 {
	var axes [3][]float64
	for a := range 3 {
		n := size[a]
		sigma := float64(n) / 8
		centre := float64(n-1) / 2
		axes[a] = make([]float64, n)
		for i := range n {
			d := (float64(i) - centre) / sigma
			axes[a][i] = math.Exp(-0.5 * d * d)
		}
	}
	g := make([]float32, 0, size[0]*size[1]*size[2])
	for _, gz := range axes[0] {
		for _, gy := range axes[1] {
			for _, gx := range axes[2] {
				g = append(g, float32(gz*gy*gx))
			}
		}
	}
	return g
}

// Softmax wraps a predictor that returns logits [n][K][patch] into one that
// returns probabilities, applying a numerically stable softmax over the K
// classes of each voxel in place.
func Softmax(logits Predictor, classes int) Predictor {
	return func(batch []float32, n int, patch [3]int, buf []float32) ([]float32, error) {
		out, err := logits(batch, n, patch, buf)
		if err != nil {
			return nil, err
		}
		pvox := patch[0] * patch[1] * patch[2]
		if len(out) != n*classes*pvox {
			return nil, fmt.Errorf("infer: softmax: network returned %d values for %d windows of %d classes × %v", len(out), n, classes, patch)
		}
		for b := range n {
			o := out[b*classes*pvox : (b+1)*classes*pvox]
			for i := range pvox {
				m := float32(math.Inf(-1))
				for k := range classes {
					m = max(m, o[k*pvox+i])
				}
				var s float32
				for k := range classes {
					e := float32(math.Exp(float64(o[k*pvox+i] - m)))
					o[k*pvox+i] = e
					s += e
				}
				for k := range classes {
					o[k*pvox+i] /= s
				}
			}
		}
		return out, nil
	}
}
