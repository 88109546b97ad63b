package ops

import (
	"fmt"

	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

// The shape operations run shaders/layout.comp, one memory-bound pass each:
// every invocation writes one element, or one vec4 when the written rows are
// multiples of 4. Concat and Split copy one part per dispatch.

// Modes of shaders/layout.comp.
const (
	layoutConcat uint32 = iota
	layoutSplit
	layoutUpsample
	layoutUpsampleBackward
	layoutPad
	layoutPadBackward
)

const layoutWG = 256

// pushLayout is layout.comp's push-constant block (16 bytes).
type pushLayout struct {
	Items                 uint32
	Block, Stride, Offset uint32
}

// layoutDims are the shapes of the up-sampling and padding modes, which
// layout.comp takes as specialization constants: the forward input and
// output sizes and the factor or the padding before.
type layoutDims struct{ In, Out, A [3]uint32 }

func dims32(d ref.Dims3) [3]uint32 { return [3]uint32{uint32(d[0]), uint32(d[1]), uint32(d[2])} }

// layout records one layout.comp pass that writes n elements of y, four per
// invocation when vec4; with acc (UpsampleBackward) it adds them to y.
func (g *GPU) layout(op string, mode uint32, n int, vec4 bool, dims layoutDims, push pushLayout, x, y *vk.Buffer, acc bool) error {
	// The modes read x as vec4s where they write vec4s, except the
	// up-sampling and padding ones, which read floats (the up-sampling
	// gradient vec4s by factors up to 2 along w).
	reads4 := vec4 && (mode == layoutConcat || mode == layoutSplit || mode == layoutUpsampleBackward && dims.A[2] <= 2)
	k, err := g.kernel("layout", []vk.Access{g.input(reads4), resultAccess(acc)}, 16, layoutWG, b32(vec4), mode,
		dims.In[0], dims.In[1], dims.In[2], dims.Out[0], dims.Out[1], dims.Out[2], dims.A[0], dims.A[1], dims.A[2], b32(acc))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	items := n
	if vec4 {
		items /= 4
	}
	// Concat and split parts take one sample per grid layer.
	samples := 1
	if mode == layoutConcat || mode == layoutSplit {
		samples = n / int(push.Block)
		items /= samples
	}
	push.Items = uint32(items)
	grid := vk.Grid1D(items, layoutWG)
	grid[2] = uint32(samples)
	return g.dispatch(op, k, grid, push, x, y)
}

// checkConcat validates the parameters, then the whole tensor and every
// part; Len methods are only called on valid parameters.
func (g *GPU) checkConcat(op string, p ref.ConcatParams, wholeName string, whole *Tensor, parts []*Tensor) error {
	if err := checkArgs(g, op, p); err != nil {
		return err
	}
	if len(parts) != len(p.Channels) {
		return fmt.Errorf("ops.%s: %d parts given, %v wants %d", op, len(parts), p, len(p.Channels))
	}
	args := []arg{in(wholeName, whole, p.OutputLen())}
	for i, t := range parts {
		args = append(args, in(fmt.Sprintf("part %d", i), t, p.PartLen(i)))
	}
	return checkArgs(g, op, nil, args...)
}

// concatParts records one pass per part, copying between the part and its
// channel block of the whole tensor in the given mode.
func (g *GPU) concatParts(op string, mode uint32, p ref.ConcatParams, whole *Tensor, parts []*Tensor) error {
	vox := p.Size.Voxels()
	vec4 := vox%4 == 0 // every block and offset is then a multiple of 4
	c0 := 0
	for i, t := range parts {
		push := pushLayout{
			Block:  uint32(p.Channels[i] * vox),
			Stride: uint32(p.OutputChannels() * vox),
			Offset: uint32(c0 * vox),
		}
		x, y := t.gpu.buf, whole.gpu.buf
		if mode == layoutSplit {
			x, y = y, x
		}
		if err := g.layout(op, mode, p.PartLen(i), vec4, layoutDims{}, push, x, y, false); err != nil {
			return err
		}
		c0 += p.Channels[i]
	}
	return nil
}

// Concat implements Engine.
func (g *GPU) Concat(p ref.ConcatParams, parts []*Tensor, y *Tensor) error {
	const op = "Concat"
	if err := g.checkConcat(op, p, "y", y, parts); err != nil {
		return err
	}
	return g.concatParts(op, layoutConcat, p, y, parts)
}

// Split implements Engine.
func (g *GPU) Split(p ref.ConcatParams, x *Tensor, parts []*Tensor) error {
	const op = "Split"
	if err := g.checkConcat(op, p, "x", x, parts); err != nil {
		return err
	}
	return g.concatParts(op, layoutSplit, p, x, parts)
}

func upsampleDims(p ref.UpsampleParams) layoutDims {
	return layoutDims{In: dims32(p.In), Out: dims32(p.OutputSize()), A: dims32(p.Factor)}
}

// Upsample implements Engine.
func (g *GPU) Upsample(p ref.UpsampleParams, x, y *Tensor) error {
	const op = "Upsample"
	if err := checkArgs(g, op, p, in("x", x, p.InputLen()), in("y", y, p.OutputLen())); err != nil {
		return err
	}
	vec4 := p.OutputSize()[2]%4 == 0
	return g.layout(op, layoutUpsample, p.OutputLen(), vec4, upsampleDims(p), pushLayout{}, x.gpu.buf, y.gpu.buf, false)
}

// UpsampleBackward implements Engine: each input voxel gathers the sum of
// its factor block of dy, in a fixed order.
func (g *GPU) UpsampleBackward(p ref.UpsampleParams, dy, dx *Tensor) error {
	const op = "UpsampleBackward"
	if err := checkArgs(g, op, p, in("dy", dy, p.OutputLen()), in("dx", dx, p.InputLen()).accumulating()); err != nil {
		return err
	}
	vec4 := p.In[2]%4 == 0
	return g.layout(op, layoutUpsampleBackward, p.InputLen(), vec4, upsampleDims(p), pushLayout{}, dy.gpu.buf, dx.gpu.buf, dx.accumulate)
}

func padDims(p ref.PadParams) layoutDims {
	return layoutDims{In: dims32(p.In), Out: dims32(p.OutputSize()), A: dims32(p.Before)}
}

// Pad implements Engine.
func (g *GPU) Pad(p ref.PadParams, x, y *Tensor) error {
	const op = "Pad"
	if err := checkArgs(g, op, p, in("x", x, p.InputLen()), in("y", y, p.OutputLen())); err != nil {
		return err
	}
	vec4 := p.OutputSize()[2]%4 == 0
	return g.layout(op, layoutPad, p.OutputLen(), vec4, padDims(p), pushLayout{}, x.gpu.buf, y.gpu.buf, false)
}

// PadBackward implements Engine: dx is the crop of dy.
func (g *GPU) PadBackward(p ref.PadParams, dy, dx *Tensor) error {
	const op = "PadBackward"
	if err := checkArgs(g, op, p, in("dy", dy, p.OutputLen()), in("dx", dx, p.InputLen())); err != nil {
		return err
	}
	vec4 := p.In[2]%4 == 0
	return g.layout(op, layoutPadBackward, p.InputLen(), vec4, padDims(p), pushLayout{}, dy.gpu.buf, dx.gpu.buf, false)
}
