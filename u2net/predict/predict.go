// Package predict segments images with a trained model: it applies the
// domain's preprocessing plan, runs the sliding window with Gaussian
// importance weighting, and maps the result back to the input's geometry.
package predict

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/u2net"
	"github.com/u2net-vk/u2net/u2net/infer"
	"github.com/u2net-vk/u2net/u2net/internal/par"
	"github.com/u2net-vk/u2net/u2net/nifti"
	"github.com/u2net-vk/u2net/u2net/preprocess"
)

// Options tune prediction.
type Options struct {
	// Patch is the window; zero means the whole (padded) volume as one
	// window when the domain has no plan, else DefaultPatch.
	Patch   [3]int
	Overlap float64 // between neighbouring windows; 0 means 0.5
	Batch   int     // windows per forward pass; 0 means 1
	Mirror  bool    // test-time augmentation over the 8 flips
	// KeepLargest lists the classes of which the labels keep only the
	// largest 26-connected component (KeepLargestComponents); the
	// probabilities stay as predicted.
	KeepLargest []uint8
	// Log receives a warning when the window or batch is reduced to fit
	// the device; nil discards it.
	Log *slog.Logger
}

// Output is a segmentation in the input's geometry.
type Output struct {
	Labels  []uint8   // [D][H][W]
	Probs   []float32 // [K][D][H][W] softmax probabilities
	Classes int
	Window  [3]int // the sliding window used, in the network's space
	Windows int    // windows placed (each predicted once per flip)
}

// Window runs the sliding window over an image [C, D, H, W] that is already
// in the network's space (preprocessed, or intensities as given).
func Window(ctx context.Context, net *u2net.Net, dom int, image []float32, shape [4]int, opt Options) (*infer.Result, error) {
	cfg := net.Model.Config
	classes := cfg.Domains[dom].Classes
	o := infer.DefaultOptions(opt.Patch)
	if opt.Overlap > 0 {
		o.Overlap = opt.Overlap
	}
	o.Batch = max(1, opt.Batch)
	o.Multiple = cfg.TotalStride()
	if opt.Patch == [3]int{} {
		o.WholeVolume = true
		// At least the total stride, and twice it on W: the deepest level
		// needs more than one voxel.
		o.Patch = cfg.TotalStride()
		o.Patch[2] *= 2
	}
	o.Mirror = [3]bool{opt.Mirror, opt.Mirror, opt.Mirror}
	if err := fitDevice(net, dom, shape, &o, opt.Log); err != nil {
		return nil, err
	}
	// The softmax runs on the engine with the network: on a GPU the host's
	// share of a window is then the cutting and the weighted accumulation.
	probs := func(x []float32, n int, p [3]int, out []float32) ([]float32, error) {
		return out, net.ProbabilitiesInto(dom, n, p, x, out)
	}
	return infer.Predict(ctx, image, shape, classes, probs, o)
}

// fitDevice reduces the batch and then the window of o until the engine
// can hold the network for them, so that a window too large for the device
// (a whole volume, or a plan's window on a CPU device, which binds at most
// 128 MiB per tensor) still gives a prediction, with more windows.
func fitDevice(net *u2net.Net, dom int, shape [4]int, o *infer.Options, log *slog.Logger) error {
	size, windows, err := infer.Plan([3]int{shape[1], shape[2], shape[3]}, *o)
	if err != nil {
		return err
	}
	jobs := len(windows)
	if o.Mirror[0] {
		jobs *= 8
	}
	batch := min(o.Batch, jobs)
	reserve := func(b int, s [3]int) error { return net.ReserveInference(dom, b, s) }
	fitted, b, err := fitWindow(reserve, size, batch, o.Multiple)
	if err != nil {
		return err
	}
	if fitted == size && b == batch {
		return nil
	}
	if log != nil {
		log.Warn("the engine cannot hold the network for the window asked for; using a smaller one",
			"window", fmt.Sprint(size), "batch", batch, "fitted_window", fmt.Sprint(fitted), "fitted_batch", b)
	}
	o.Batch = b
	if fitted != size {
		o.WholeVolume = false
		o.Patch = fitted
	}
	return nil
}

// fitWindow returns the largest batch up to batch, and then the largest
// window no larger than size on any axis, that reserve accepts: the batch
// is halved first, then the window shrunk as FitWindow does. Only the
// engine's out-of-memory and too-large errors lead to asking for less; any
// other error is returned.
func fitWindow(reserve func(batch int, size [3]int) error, size [3]int, batch int, multiple [3]int) ([3]int, int, error) {
	for batch > 1 {
		err := reserve(batch, size)
		if err == nil {
			return size, batch, nil
		}
		if !ops.DoesNotFit(err) {
			return size, batch, err
		}
		batch /= 2
	}
	fitted, err := FitWindow(func(s [3]int) error { return reserve(batch, s) }, size, multiple)
	return fitted, batch, err
}

// FitWindow returns the largest window no larger than size on any axis
// that reserve accepts, shortening the longest axis by about an eighth at a
// time, in multiples of its stride (multiple), while reserve fails with the
// engine's out-of-memory or too-large error; any other error is returned.
// The deepest level keeps more than one voxel: at least one axis stays
// above its stride.
func FitWindow(reserve func(size [3]int) error, size, multiple [3]int) ([3]int, error) {
	asked := size
	var smallest [3]int // one stride per axis: its deepest level holds one voxel
	for a := range 3 {
		smallest[a] = max(multiple[a], 1)
	}
	for {
		err := reserve(size)
		if err == nil {
			return size, nil
		}
		if !ops.DoesNotFit(err) {
			return size, err
		}
		longest := -1
		for a := range 3 {
			if size[a] > smallest[a] && (longest < 0 || size[a] > size[longest]) {
				longest = a
			}
		}
		next := size
		if longest >= 0 {
			m, n := smallest[longest], size[longest]
			next[longest] = max(m, min(n-m, n*7/8/m*m))
		}
		if next == smallest {
			return size, fmt.Errorf("not even a window of %v fits the device (asked for %v): %w", size, asked, err)
		}
		size = next
	}
}

// Plan returns the domain's preprocessing plan, or nil when the model has
// none for it.
func Plan(cfg u2net.Config, dom int) (*preprocess.Plan, error) {
	raw := cfg.Domains[dom].Plan
	if len(raw) == 0 {
		return nil, nil
	}
	var p preprocess.Plan
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("domain %s: unreadable preprocessing plan: %w", cfg.Domains[dom].Name, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("domain %s: %w", cfg.Domains[dom].Name, err)
	}
	return &p, nil
}

// DefaultPatch returns the window for a planned domain: the patch the
// model was trained with where the plan records it, else the plan's median
// shape up to 128 per axis; rounded down to the total stride, at least one
// stride.
func DefaultPatch(cfg u2net.Config, p *preprocess.Plan) [3]int {
	ts := cfg.TotalStride()
	var patch [3]int
	for a := range patch {
		n := min(p.MedianShape[a], 128)
		if p.Patch != [3]int{} {
			n = p.Patch[a]
		}
		patch[a] = max(ts[a], n/ts[a]*ts[a])
	}
	return patch
}

// Volume segments one image volume of domain dom.
func Volume(ctx context.Context, net *u2net.Net, dom int, vol *nifti.Volume, opt Options) (*Output, error) {
	return Ensemble(ctx, []Member{{Net: net, Dom: dom}}, vol, opt)
}

// probabilities returns the class probabilities of vol in its own geometry
// as one member predicts them, with its plan and window; Labels is left
// unset.
func (m Member) probabilities(ctx context.Context, vol *nifti.Volume, opt Options) (*Output, error) {
	cfg := m.Net.Model.Config
	d := cfg.Domains[m.Dom]
	if vol.Shape[0] != d.InChannels {
		return nil, fmt.Errorf("the image has %d channel(s); domain %s of the model takes %d", vol.Shape[0], d.Name, d.InChannels)
	}
	plan, err := Plan(cfg, m.Dom)
	if err != nil {
		return nil, err
	}
	if plan == nil {
		res, err := Window(ctx, m.Net, m.Dom, vol.Data, vol.Shape, opt)
		if err != nil {
			return nil, err
		}
		return &Output{Probs: res.Probs, Classes: d.Classes, Window: res.Window, Windows: res.Windows}, nil
	}
	c, err := plan.ApplyImage(vol)
	if err != nil {
		return nil, err
	}
	if opt.Patch == [3]int{} {
		opt.Patch = DefaultPatch(cfg, plan)
	}
	res, err := Window(ctx, m.Net, m.Dom, c.Image, c.Shape, opt)
	if err != nil {
		return nil, err
	}
	// Probabilities go back to the original grid (trilinear, then
	// un-cropped); the labels are their argmax there.
	probs, err := preprocess.RestoreProbabilities(res.Probs, d.Classes, c.Geometry)
	if err != nil {
		return nil, err
	}
	return &Output{Probs: probs, Classes: d.Classes, Window: res.Window, Windows: res.Windows}, nil
}

// PlannedKeepLargest returns the classes of which prediction keeps only the
// largest connected component by default: those that the plan of every
// member's domain lists (train chose them on its validation cases).
func PlannedKeepLargest(members []Member) ([]uint8, error) {
	var count [256]int
	for _, m := range members {
		plan, err := Plan(m.Net.Model.Config, m.Dom)
		if err != nil {
			return nil, err
		}
		if plan == nil {
			return nil, nil
		}
		for _, c := range plan.KeepLargest {
			count[c]++
		}
	}
	var out []uint8
	for c := 1; c < 256 && len(members) > 0; c++ {
		if count[c] == len(members) {
			out = append(out, uint8(c))
		}
	}
	return out, nil
}

// Member is one model of an ensemble: its net, and the index in its model
// of the domain to segment.
type Member struct {
	Net *u2net.Net
	Dom int
}

// Ensemble segments vol with each member in turn, each with its own plan
// and window, and averages their probabilities in the input's geometry
// before the argmax and the clean-up opt asks for: models trained on other
// folds or with other seeds vote with equal weight. The members' domains
// must have the same classes. With several members, each frees its graphs
// once done, so that the next finds the device's memory free.
// Output.Window is the first member's window and Output.Windows counts the
// windows of all.
func Ensemble(ctx context.Context, members []Member, vol *nifti.Volume, opt Options) (*Output, error) {
	if len(members) == 0 {
		return nil, fmt.Errorf("an ensemble needs at least one model")
	}
	if err := vol.CheckFinite(); err != nil {
		return nil, err
	}
	first := members[0].Net.Model.Config.Domains[members[0].Dom]
	for _, c := range opt.KeepLargest {
		if int(c) >= first.Classes {
			return nil, fmt.Errorf("largest component of class %d: the domain has classes 0..%d", c, first.Classes-1)
		}
	}
	var sum *Output
	for i, m := range members {
		d := m.Net.Model.Config.Domains[m.Dom]
		if d.Classes != first.Classes {
			return nil, fmt.Errorf("model %d of the ensemble: domain %s has %d classes, model 1's domain %s has %d",
				i+1, d.Name, d.Classes, first.Name, first.Classes)
		}
		out, err := m.probabilities(ctx, vol, opt)
		if err != nil {
			if len(members) > 1 {
				err = fmt.Errorf("model %d of the ensemble: %w", i+1, err)
			}
			return nil, err
		}
		if sum == nil {
			sum = out
		} else {
			par.Ranges(len(out.Probs), minHostItems, func(lo, hi int) {
				for j := lo; j < hi; j++ {
					sum.Probs[j] += out.Probs[j]
				}
			})
			sum.Windows += out.Windows
		}
		if len(members) > 1 {
			if err := m.Net.FreeGraphs(); err != nil {
				return nil, err
			}
		}
	}
	if len(members) > 1 {
		scale := 1 / float32(len(members))
		par.Ranges(len(sum.Probs), minHostItems, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				sum.Probs[j] *= scale
			}
		})
	}
	sum.Labels = argmax(sum.Probs, sum.Classes)
	if len(opt.KeepLargest) > 0 {
		shape := [3]int{vol.Shape[1], vol.Shape[2], vol.Shape[3]}
		if _, err := KeepLargestComponents(sum.Labels, shape, opt.KeepLargest); err != nil {
			return nil, err
		}
	}
	return sum, nil
}

// minHostItems is the fewest voxels a goroutine of the host's per-voxel
// loops takes: the loops over a whole image spread over the cores.
const minHostItems = 1 << 16

func argmax(probs []float32, classes int) []uint8 {
	n := len(probs) / classes
	out := make([]uint8, n)
	par.Ranges(n, minHostItems, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			best := probs[i]
			for k := 1; k < classes; k++ {
				if v := probs[k*n+i]; v > best {
					best, out[i] = v, uint8(k)
				}
			}
		}
	})
	return out
}
