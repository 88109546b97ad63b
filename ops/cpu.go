package ops

import (
	"fmt"

	"github.com/u2net-vk/u2net/ops/ref"
)

// CPU is the reference engine: every operation runs package ref's float64-
// accumulating loops on host memory, synchronously.
type CPU struct {
	// MemoryLimit caps the bytes of the tensors allocated at once (0: no
	// cap); past it Alloc fails with ErrOutOfMemory, as a full device does.
	MemoryLimit int64
	inUse       int64
}

// NewCPU returns the CPU reference engine.
func NewCPU() *CPU { return &CPU{} }

// Name implements Engine.
func (c *CPU) Name() string { return "cpu (plain-Go reference)" }

// maxElements bounds one tensor: the GPU engine's indices are 32-bit.
const maxElements = 1<<31 - 1

func checkAlloc(n int) error {
	if n <= 0 || n > maxElements {
		return fmt.Errorf("ops.Alloc: %d elements, want 1 to %d", n, maxElements)
	}
	return nil
}

// Alloc implements Engine.
func (c *CPU) Alloc(n int) (*Tensor, error) {
	if err := c.reserve(n); err != nil {
		return nil, err
	}
	return &Tensor{n: n, owner: c, f: make([]float32, n)}, nil
}

// reserve checks n elements and counts them against the memory limit.
func (c *CPU) reserve(n int) error {
	if err := checkAlloc(n); err != nil {
		return err
	}
	if bytes := 4 * int64(n); c.MemoryLimit > 0 && c.inUse+bytes > c.MemoryLimit {
		return fmt.Errorf("ops.Alloc of %d elements on the reference engine: %w: the memory limit of %d bytes would be passed (%d in use)",
			n, ErrOutOfMemory, c.MemoryLimit, c.inUse)
	}
	c.inUse += 4 * int64(n)
	return nil
}

// AllocLabels implements Engine.
func (c *CPU) AllocLabels(n int) (*Tensor, error) {
	if err := c.reserve(n); err != nil {
		return nil, err
	}
	return &Tensor{n: n, dtype: Int32, owner: c, l: make([]int32, n)}, nil
}

// AllocPacked implements Engine.
func (c *CPU) AllocPacked(lens []int) (*Tensor, []*Tensor, error) {
	offsets, total, err := packLayout(lens, 1)
	if err != nil {
		return nil, nil, err
	}
	if err := c.reserve(total); err != nil {
		return nil, nil, err
	}
	whole := &Tensor{n: total, owner: c, f: make([]float32, total)}
	parts := make([]*Tensor, len(lens))
	for i, off := range offsets {
		parts[i] = &Tensor{n: lens[i], owner: c, f: whole.f[off : off+lens[i] : off+lens[i]], part: true}
	}
	return whole, parts, nil
}

// Free implements Engine.
func (c *CPU) Free(t *Tensor) {
	if t == nil || t.accumulate || (t.f == nil && t.l == nil) {
		return
	}
	if !t.part {
		c.inUse -= 4 * int64(t.n)
	}
	t.f, t.l, t.n = nil, nil, 0
}

// Write implements Engine.
func (c *CPU) Write(t *Tensor, src []float32) error {
	if err := checkArgs(c, "Write", nil, in("tensor", t, len(src))); err != nil {
		return err
	}
	copy(t.f, src)
	return nil
}

// WriteLabels implements Engine.
func (c *CPU) WriteLabels(t *Tensor, src []int32) error {
	if err := checkArgs(c, "WriteLabels", nil, labels("tensor", t, len(src))); err != nil {
		return err
	}
	copy(t.l, src)
	return nil
}

// Read implements Engine.
func (c *CPU) Read(t *Tensor, dst []float32) error {
	if err := checkArgs(c, "Read", nil, in("tensor", t, len(dst))); err != nil {
		return err
	}
	copy(dst, t.f)
	return nil
}

// ReadLabels implements Engine.
func (c *CPU) ReadLabels(t *Tensor, dst []int32) error {
	if err := checkArgs(c, "ReadLabels", nil, labels("tensor", t, len(dst))); err != nil {
		return err
	}
	copy(dst, t.l)
	return nil
}

// Sync implements Engine; the CPU engine is synchronous.
func (c *CPU) Sync() error { return nil }

// Close implements Engine.
func (c *CPU) Close() error { return nil }

// f returns a tensor's float32 data, nil for an absent tensor.
func f(t *Tensor) []float32 {
	if t == nil {
		return nil
	}
	return t.f
}

func lab(t *Tensor) []int32 {
	if t == nil {
		return nil
	}
	return t.l
}

// owned checks that every given tensor belongs to c; the ref functions
// check lengths and shapes.
func (c *CPU) owned(op string, ts ...*Tensor) error {
	for _, t := range ts {
		if t != nil && t.owner != c {
			return fmt.Errorf("ops.%s: a tensor belongs to another engine", op)
		}
		if t != nil && t.accumulate {
			return fmt.Errorf("ops.%s: an accumulating view (ops.Accumulate) is given where only input gradients take one", op)
		}
	}
	return nil
}

// gradInto returns where a backward method writes the input gradient dx,
// which may be an accumulating view, and a function to call afterwards:
// dx's own elements, or a scratch slice that the function then adds to
// them.
func (c *CPU) gradInto(op string, dx *Tensor) ([]float32, func(), error) {
	if dx == nil || !dx.accumulate {
		return f(dx), func() {}, c.owned(op, dx)
	}
	if dx.owner != c {
		return nil, nil, fmt.Errorf("ops.%s: a tensor belongs to another engine", op)
	}
	tmp := make([]float32, dx.n)
	return tmp, func() {
		for i, v := range tmp {
			dx.f[i] += v
		}
	}, nil
}

// Fill implements Engine.
func (c *CPU) Fill(t *Tensor, v float32) error {
	if err := checkArgs(c, "Fill", nil, in("tensor", t, -1)); err != nil {
		return err
	}
	for i := range t.f {
		t.f[i] = v
	}
	return nil
}

// Copy implements Engine.
func (c *CPU) Copy(dst, src *Tensor) error {
	if err := checkArgs(c, "Copy", nil, in("src", src, -1), in("dst", dst, src.Len())); err != nil {
		return err
	}
	copy(dst.f, src.f)
	return nil
}

// Axpy implements Engine.
func (c *CPU) Axpy(a float32, x, y *Tensor) error {
	if err := checkArgs(c, "Axpy", nil, in("x", x, -1), in("y", y, x.Len())); err != nil {
		return err
	}
	for i, v := range x.f {
		y.f[i] += a * v
	}
	return nil
}

// Add implements Engine.
func (c *CPU) Add(a, b, y *Tensor) error {
	if err := c.owned("Add", a, b, y); err != nil {
		return err
	}
	return ref.Add(f(a), f(b), f(y))
}

// LeakyReLU implements Engine.
func (c *CPU) LeakyReLU(slope float64, x, y *Tensor) error {
	if err := c.owned("LeakyReLU", x, y); err != nil {
		return err
	}
	return ref.LeakyReLU(slope, f(x), f(y))
}

// LeakyReLUBackward implements Engine.
func (c *CPU) LeakyReLUBackward(slope float64, x, dy, dx *Tensor) error {
	if err := c.owned("LeakyReLUBackward", x, dy, dx); err != nil {
		return err
	}
	return ref.LeakyReLUBackward(slope, f(x), f(dy), f(dx))
}

// DepthwiseConv3d implements Engine.
func (c *CPU) DepthwiseConv3d(p ref.DepthwiseParams, x, w, b, y *Tensor) error {
	if err := c.owned("DepthwiseConv3d", x, w, b, y); err != nil {
		return err
	}
	return ref.DepthwiseConv3d(p, f(x), f(w), f(b), f(y))
}

// DepthwiseConv3dBackward implements Engine.
func (c *CPU) DepthwiseConv3dBackward(p ref.DepthwiseParams, x, w, dy, dx, dw, db *Tensor) error {
	return c.backward("DepthwiseConv3dBackward", dx, []*Tensor{x, w, dy, dw, db}, func(dx []float32) error {
		return ref.DepthwiseConv3dBackward(p, f(x), f(w), f(dy), dx, f(dw), f(db))
	})
}

// DepthwiseConv3dJoined implements Engine: the reference convolves the
// concatenation, built here.
func (c *CPU) DepthwiseConv3dJoined(p ref.DepthwiseParams, split int, x1, x2, w, b, y *Tensor) error {
	const op = "DepthwiseConv3dJoined"
	cp, err := checkJoined(c, op, p, split, x1, x2, nil, nil)
	if err != nil {
		return err
	}
	if err := c.owned(op, w, b, y); err != nil {
		return err
	}
	x := make([]float32, p.InputLen())
	if err := ref.Concat(cp, [][]float32{f(x1), f(x2)}, x); err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	return ref.DepthwiseConv3d(p, x, f(w), f(b), f(y))
}

// DepthwiseConv3dStats implements Engine: the convolution, then the
// reference's statistics of its output.
func (c *CPU) DepthwiseConv3dStats(p ref.DepthwiseParams, np ref.NormParams, split int, x1, x2, w, b, y, mean, invStd *Tensor) error {
	const op = "DepthwiseConv3dStats"
	if _, err := checkDepthwiseStats(c, op, p, np, split, x1, x2, w, b, y, mean, invStd); err != nil {
		return err
	}
	var err error
	if x2 != nil {
		err = c.DepthwiseConv3dJoined(p, split, x1, x2, w, b, y)
	} else {
		err = c.DepthwiseConv3d(p, x1, w, b, y)
	}
	if err != nil {
		return err
	}
	return ref.InstanceNormStats(np, f(y), f(mean), f(invStd))
}

// DepthwiseConv3dJoinedBackward implements Engine.
func (c *CPU) DepthwiseConv3dJoinedBackward(p ref.DepthwiseParams, split int, x1, x2, w, dy, dx1, dx2, dw, db *Tensor) error {
	const op = "DepthwiseConv3dJoinedBackward"
	cp, err := checkJoined(c, op, p, split, x1, x2, dx1, dx2)
	if err != nil {
		return err
	}
	if err := c.owned(op, w, dy, dw, db); err != nil {
		return err
	}
	x := make([]float32, p.InputLen())
	if err := ref.Concat(cp, [][]float32{f(x1), f(x2)}, x); err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	var dx []float32
	if dx1 != nil {
		dx = make([]float32, p.InputLen())
	}
	if err := ref.DepthwiseConv3dBackward(p, x, f(w), f(dy), dx, f(dw), f(db)); err != nil {
		return err
	}
	if dx == nil {
		return nil
	}
	into1, added1, _ := c.gradInto(op, dx1)
	into2, added2, _ := c.gradInto(op, dx2)
	if err := ref.Split(cp, dx, [][]float32{into1, into2}); err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	added1()
	added2()
	return nil
}

// PointwiseConv3d implements Engine.
func (c *CPU) PointwiseConv3d(p ref.PointwiseParams, x, w, b, y *Tensor) error {
	if err := c.owned("PointwiseConv3d", x, w, b, y); err != nil {
		return err
	}
	return ref.PointwiseConv3d(p, f(x), f(w), f(b), f(y))
}

// PointwiseConv3dNormed implements Engine.
func (c *CPU) PointwiseConv3dNormed(p ref.PointwiseParams, np ref.NormParams, x, gamma, beta, mean, invStd, w, b, y *Tensor) error {
	if err := c.owned("PointwiseConv3dNormed", x, gamma, beta, mean, invStd, w, b, y); err != nil {
		return err
	}
	return ref.PointwiseConv3dNormed(p, np, f(x), f(gamma), f(beta), f(mean), f(invStd), f(w), f(b), f(y))
}

// PointwiseConv3dNormedBackward implements Engine.
func (c *CPU) PointwiseConv3dNormedBackward(p ref.PointwiseParams, np ref.NormParams, x, gamma, beta, mean, invStd, w, dy, dh, dw, db *Tensor) error {
	if err := c.owned("PointwiseConv3dNormedBackward", x, gamma, beta, mean, invStd, w, dy, dh, dw, db); err != nil {
		return err
	}
	return ref.PointwiseConv3dNormedBackward(p, np, f(x), f(gamma), f(beta), f(mean), f(invStd), f(w), f(dy), f(dh), f(dw), f(db))
}

// PointwiseConv3dBackward implements Engine.
func (c *CPU) PointwiseConv3dBackward(p ref.PointwiseParams, x, w, dy, dx, dw, db *Tensor) error {
	if err := c.owned("PointwiseConv3dBackward", x, w, dy, dx, dw, db); err != nil {
		return err
	}
	return ref.PointwiseConv3dBackward(p, f(x), f(w), f(dy), f(dx), f(dw), f(db))
}

// Conv3d implements Engine.
func (c *CPU) Conv3d(p ref.ConvParams, x, w, b, y *Tensor) error {
	if err := c.owned("Conv3d", x, w, b, y); err != nil {
		return err
	}
	return ref.Conv3d(p, f(x), f(w), f(b), f(y))
}

// Conv3dBackward implements Engine.
func (c *CPU) Conv3dBackward(p ref.ConvParams, x, w, dy, dx, dw, db *Tensor) error {
	return c.backward("Conv3dBackward", dx, []*Tensor{x, w, dy, dw, db}, func(dx []float32) error {
		return ref.Conv3dBackward(p, f(x), f(w), f(dy), dx, f(dw), f(db))
	})
}

// backward checks a backward method's tensors (others and its input
// gradient dx, which may be an accumulating view) and runs its reference
// pass, which writes dx's contribution into the slice it is given.
func (c *CPU) backward(op string, dx *Tensor, others []*Tensor, run func(dx []float32) error) error {
	if err := c.owned(op, others...); err != nil {
		return err
	}
	into, added, err := c.gradInto(op, dx)
	if err != nil {
		return err
	}
	if err := run(into); err != nil {
		return err
	}
	added()
	return nil
}

// ConvTranspose3d implements Engine.
func (c *CPU) ConvTranspose3d(p ref.ConvTransposeParams, x, w, b, y *Tensor) error {
	if err := c.owned("ConvTranspose3d", x, w, b, y); err != nil {
		return err
	}
	return ref.ConvTranspose3d(p, f(x), f(w), f(b), f(y))
}

// ConvTranspose3dBackward implements Engine.
func (c *CPU) ConvTranspose3dBackward(p ref.ConvTransposeParams, x, w, dy, dx, dw, db *Tensor) error {
	return c.backward("ConvTranspose3dBackward", dx, []*Tensor{x, w, dy, dw, db}, func(dx []float32) error {
		return ref.ConvTranspose3dBackward(p, f(x), f(w), f(dy), dx, f(dw), f(db))
	})
}

// ChannelSum implements Engine.
func (c *CPU) ChannelSum(n, ch int, size ref.Dims3, x, sums *Tensor) error {
	if err := c.owned("ChannelSum", x, sums); err != nil {
		return err
	}
	return ref.ChannelSum(n, ch, size, f(x), f(sums))
}

// InstanceNorm3d implements Engine.
func (c *CPU) InstanceNorm3d(p ref.NormParams, x, r, gamma, beta, y, mean, invStd *Tensor) error {
	const op = "InstanceNorm3d"
	if err := c.owned(op, x, r, gamma, beta, y, mean, invStd); err != nil {
		return err
	}
	if y == nil && (mean == nil || invStd == nil) {
		return fmt.Errorf("ops.%s: y is missing (it may be only with mean and invStd)", op)
	}
	return ref.InstanceNorm3d(p, f(x), f(r), f(gamma), f(beta), f(y), f(mean), f(invStd))
}

// InstanceNorm3dBackward implements Engine.
// The saved statistics are checked and then left unused: the reference
// recomputes them in float64.
func (c *CPU) InstanceNorm3dBackward(p ref.NormParams, x, r, gamma, beta, mean, invStd, dy, dx, dr, dgamma, dbeta *Tensor) error {
	const op = "InstanceNorm3dBackward"
	if err := c.owned(op, x, r, gamma, beta, mean, invStd, dy, dx, dr, dgamma, dbeta); err != nil {
		return err
	}
	if err := checkSavedStats(c, op, p, mean, invStd); err != nil {
		return err
	}
	return ref.InstanceNorm3dBackward(p, f(x), f(r), f(gamma), f(beta), f(dy), f(dx), f(dr), f(dgamma), f(dbeta))
}

func floats(ts []*Tensor) [][]float32 {
	out := make([][]float32, len(ts))
	for i, t := range ts {
		out[i] = f(t)
	}
	return out
}

// Concat implements Engine.
func (c *CPU) Concat(p ref.ConcatParams, parts []*Tensor, y *Tensor) error {
	if err := c.owned("Concat", append([]*Tensor{y}, parts...)...); err != nil {
		return err
	}
	return ref.Concat(p, floats(parts), f(y))
}

// Split implements Engine.
func (c *CPU) Split(p ref.ConcatParams, x *Tensor, parts []*Tensor) error {
	if err := c.owned("Split", append([]*Tensor{x}, parts...)...); err != nil {
		return err
	}
	return ref.Split(p, f(x), floats(parts))
}

// Upsample implements Engine.
func (c *CPU) Upsample(p ref.UpsampleParams, x, y *Tensor) error {
	if err := c.owned("Upsample", x, y); err != nil {
		return err
	}
	return ref.Upsample(p, f(x), f(y))
}

// UpsampleBackward implements Engine.
func (c *CPU) UpsampleBackward(p ref.UpsampleParams, dy, dx *Tensor) error {
	return c.backward("UpsampleBackward", dx, []*Tensor{dy}, func(dx []float32) error {
		return ref.UpsampleBackward(p, f(dy), dx)
	})
}

// Pad implements Engine.
func (c *CPU) Pad(p ref.PadParams, x, y *Tensor) error {
	if err := c.owned("Pad", x, y); err != nil {
		return err
	}
	return ref.Pad(p, f(x), f(y))
}

// PadBackward implements Engine.
func (c *CPU) PadBackward(p ref.PadParams, dy, dx *Tensor) error {
	if err := c.owned("PadBackward", dy, dx); err != nil {
		return err
	}
	return ref.PadBackward(p, f(dy), f(dx))
}

// Softmax implements Engine.
func (c *CPU) Softmax(p ref.LossParams, logits, probs *Tensor) error {
	if err := c.owned("Softmax", logits, probs); err != nil {
		return err
	}
	return ref.Softmax(p, f(logits), f(probs))
}

// Argmax implements Engine.
func (c *CPU) Argmax(p ref.LossParams, logits, labels *Tensor) error {
	if err := c.owned("Argmax", logits, labels); err != nil {
		return err
	}
	return ref.Argmax(p, f(logits), lab(labels))
}

// CrossEntropy implements Engine.
func (c *CPU) CrossEntropy(p ref.LossParams, logits, labels, dlogits, loss *Tensor) error {
	if err := checkArgs(c, "CrossEntropy", nil, in("loss", loss, 1)); err != nil {
		return err
	}
	if err := c.owned("CrossEntropy", logits, labels, dlogits); err != nil {
		return err
	}
	v, err := ref.CrossEntropy(p, f(logits), lab(labels), f(dlogits))
	if err == nil {
		loss.f[0] = float32(v)
	}
	return err
}

// SoftDice implements Engine.
func (c *CPU) SoftDice(p ref.DiceParams, logits, labels, dlogits, loss *Tensor) error {
	if err := checkArgs(c, "SoftDice", nil, in("loss", loss, 1)); err != nil {
		return err
	}
	if err := c.owned("SoftDice", logits, labels, dlogits); err != nil {
		return err
	}
	v, err := ref.SoftDice(p, f(logits), lab(labels), f(dlogits))
	if err == nil {
		loss.f[0] = float32(v)
	}
	return err
}

// AdamStep implements Engine.
func (c *CPU) AdamStep(p ref.AdamParams, step int, param, grad, m, v *Tensor) error {
	if err := c.owned("AdamStep", param, grad, m, v); err != nil {
		return err
	}
	return ref.AdamStep(p, step, f(param), f(grad), f(m), f(v))
}

// SGDStep implements Engine.
func (c *CPU) SGDStep(p ref.SGDParams, step int, param, grad, buf *Tensor) error {
	if err := c.owned("SGDStep", param, grad, buf); err != nil {
		return err
	}
	return ref.SGDStep(p, step, f(param), f(grad), f(buf))
}
