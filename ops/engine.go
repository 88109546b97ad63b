// Package ops runs each operation of the 3D U²-Net, forward and backward, on
// an Engine: the CPU engine computes with the plain-Go reference of package
// ref, the GPU engine records GLSL compute kernels into Vulkan batches. The
// model is written once against Engine and runs on either.
//
// Semantics, shapes and parameter structs are those of package ref (PyTorch's
// definitions, NCDHW float32 tensors, int32 labels). Each method validates
// its parameters and its tensors' lengths and returns an error naming the
// operation and the shapes; it never panics on user input.
//
// On the GPU engine, methods record work and return at once; results are
// ready after Sync, Read or ReadLabels, which also report execution errors.
// Tensors passed as outputs must not alias inputs unless a method says so.
// Where several kernels compute the same result, the GPU engine picks one
// by rules that SetKernel overrides; a KernelTuning keeps the choices
// measured fastest on one device.
package ops

import (
	"errors"
	"fmt"

	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

// Errors of Alloc and AllocPacked that a caller may handle by asking for
// less, e.g. a smaller window: the engine's memory is full (or its limit
// reached), or one tensor is larger than the engine can bind.
var (
	ErrOutOfMemory = vk.ErrOutOfMemory
	ErrTooLarge    = vk.ErrTooLarge
)

// DoesNotFit reports whether err is one of those: asking for less may work.
func DoesNotFit(err error) bool {
	return errors.Is(err, ErrOutOfMemory) || errors.Is(err, ErrTooLarge)
}

// DType is a tensor's element type.
type DType uint8

// Element types.
const (
	Float32 DType = iota
	Int32         // class labels
)

func (d DType) String() string {
	if d == Int32 {
		return "int32"
	}
	return "float32"
}

// Tensor is a flat array of n elements owned by one engine. Its shape is
// implied by the parameters of the operations it is passed to.
type Tensor struct {
	n     int
	dtype DType
	owner Engine
	f     []float32 // CPU engine
	l     []int32   // CPU engine, labels
	part  bool      // CPU engine: a part of a packed tensor, freed with it
	gpu   gpuTensor // GPU engine
	// accumulate marks a view made by Accumulate.
	accumulate bool
}

// Accumulate returns a view of t through which the backward methods that
// take it add their input gradient to t's contents instead of overwriting
// them: dx of Conv3dBackward, DepthwiseConv3dBackward,
// ConvTranspose3dBackward and UpsampleBackward, dx1 and dx2 of
// DepthwiseConv3dJoinedBackward. A gradient with several contributions is
// then summed where it is written, where a scratch tensor and an Add would
// write, read and read again a tensor of its size. The sum is t + the
// contribution, rounded once: the bits of Add. Every other argument
// refuses the view; Free ignores it.
func Accumulate(t *Tensor) *Tensor {
	if t == nil {
		return nil
	}
	v := *t
	v.accumulate = true
	return &v
}

// Len returns the number of elements.
func (t *Tensor) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// DType returns the element type.
func (t *Tensor) DType() DType { return t.dtype }

// Engine computes the network's operations. See the package documentation
// for the recording and error rules; ref documents each operation.
type Engine interface {
	// Name describes the engine and its device.
	Name() string
	// Alloc returns a float32 tensor of n elements with undefined contents.
	Alloc(n int) (*Tensor, error)
	// AllocLabels returns an int32 tensor of n elements.
	AllocLabels(n int) (*Tensor, error)
	// AllocPacked returns one zero-filled float32 tensor holding parts of
	// the given lengths, each at an offset the engine can bind, and the
	// parts as tensors aliasing it: one elementwise call on the whole (an
	// optimiser step) then covers every part. Freeing the whole frees the
	// parts; freeing a part only detaches it.
	AllocPacked(lens []int) (whole *Tensor, parts []*Tensor, err error)
	// Free releases a tensor; it must not be used afterwards.
	Free(t *Tensor)
	Write(t *Tensor, src []float32) error
	WriteLabels(t *Tensor, src []int32) error
	// Read waits for the recorded work and copies t into dst.
	Read(t *Tensor, dst []float32) error
	ReadLabels(t *Tensor, dst []int32) error
	// Sync waits for all recorded work and returns its errors.
	Sync() error
	// Close releases the engine and everything it allocated.
	Close() error

	// Fill sets every element of t to v.
	Fill(t *Tensor, v float32) error
	// Copy copies src into dst of the same length.
	Copy(dst, src *Tensor) error
	// Axpy computes y += a·x.
	Axpy(a float32, x, y *Tensor) error
	// Add computes y = a + b; y may alias a or b.
	Add(a, b, y *Tensor) error
	LeakyReLU(slope float64, x, y *Tensor) error
	LeakyReLUBackward(slope float64, x, dy, dx *Tensor) error

	DepthwiseConv3d(p ref.DepthwiseParams, x, w, b, y *Tensor) error
	DepthwiseConv3dBackward(p ref.DepthwiseParams, x, w, dy, dx, dw, db *Tensor) error
	// DepthwiseConv3dJoined is DepthwiseConv3d of the channel concatenation
	// of x1 (its first split channels) and x2 (the other p.C − split), read
	// in place: the concatenation is never built, which saves a decoder
	// both its copy and its memory.
	DepthwiseConv3dJoined(p ref.DepthwiseParams, split int, x1, x2, w, b, y *Tensor) error
	// DepthwiseConv3dJoinedBackward is its backward pass: the input's
	// gradient is written as its two parts, dx1 and dx2 (both or neither).
	DepthwiseConv3dJoinedBackward(p ref.DepthwiseParams, split int, x1, x2, w, dy, dx1, dx2, dw, db *Tensor) error
	// DepthwiseConv3dStats is DepthwiseConv3d of x1 (x2 nil) or
	// DepthwiseConv3dJoined of x1 and x2 at split that also writes the
	// statistics of the instance norm np of its output y into mean and
	// invStd, as InstanceNorm3d(np, y, …, nil, mean, invStd) does (np's
	// shape is y's; its residual and activation do not enter them). The
	// GPU computes them as it writes y, which then is not read again for
	// them.
	DepthwiseConv3dStats(p ref.DepthwiseParams, np ref.NormParams, split int, x1, x2, w, b, y, mean, invStd *Tensor) error
	PointwiseConv3d(p ref.PointwiseParams, x, w, b, y *Tensor) error
	PointwiseConv3dBackward(p ref.PointwiseParams, x, w, dy, dx, dw, db *Tensor) error
	// PointwiseConv3dNormed is PointwiseConv3d of the instance norm of x (np,
	// its LeakyReLU included; no residual) from the norm's statistics, as
	// InstanceNorm3d gives them without its output: the normalised tensor is
	// never built, the convolution normalises x as it reads it, and a
	// training step need not keep it.
	PointwiseConv3dNormed(p ref.PointwiseParams, np ref.NormParams, x, gamma, beta, mean, invStd, w, b, y *Tensor) error
	// PointwiseConv3dNormedBackward is its backward pass but for x's
	// gradient: dh, the normalised input's, which InstanceNorm3dBackward
	// then takes as its dy; dw and db. Any of the three may be nil.
	PointwiseConv3dNormedBackward(p ref.PointwiseParams, np ref.NormParams, x, gamma, beta, mean, invStd, w, dy, dh, dw, db *Tensor) error
	Conv3d(p ref.ConvParams, x, w, b, y *Tensor) error
	Conv3dBackward(p ref.ConvParams, x, w, dy, dx, dw, db *Tensor) error
	ConvTranspose3d(p ref.ConvTransposeParams, x, w, b, y *Tensor) error
	ConvTranspose3dBackward(p ref.ConvTransposeParams, x, w, dy, dx, dw, db *Tensor) error
	ChannelSum(n, c int, size ref.Dims3, x, sums *Tensor) error

	// InstanceNorm3d normalises x into y and, when they are not nil, writes
	// its statistics into mean and invStd; with those and y nil it computes
	// only the statistics.
	InstanceNorm3d(p ref.NormParams, x, r, gamma, beta, y, mean, invStd *Tensor) error
	// InstanceNorm3dBackward takes optionally the statistics InstanceNorm3d
	// saved (mean and invStd, both or neither) for the same x: an engine
	// may use them instead of computing them again (the GPU does; the CPU
	// reference recomputes them in float64). dr, the residual's gradient,
	// is nil unless p.Residual.
	InstanceNorm3dBackward(p ref.NormParams, x, r, gamma, beta, mean, invStd, dy, dx, dr, dgamma, dbeta *Tensor) error

	Concat(p ref.ConcatParams, parts []*Tensor, y *Tensor) error
	Split(p ref.ConcatParams, x *Tensor, parts []*Tensor) error
	Upsample(p ref.UpsampleParams, x, y *Tensor) error
	UpsampleBackward(p ref.UpsampleParams, dy, dx *Tensor) error
	Pad(p ref.PadParams, x, y *Tensor) error
	PadBackward(p ref.PadParams, dy, dx *Tensor) error

	Softmax(p ref.LossParams, logits, probs *Tensor) error
	Argmax(p ref.LossParams, logits, labels *Tensor) error
	// CrossEntropy writes the mean loss into the one-element tensor loss and
	// its gradient into dlogits (which may be nil).
	CrossEntropy(p ref.LossParams, logits, labels, dlogits, loss *Tensor) error
	// SoftDice writes the loss into the one-element tensor loss and its
	// gradient into dlogits (which may be nil).
	SoftDice(p ref.DiceParams, logits, labels, dlogits, loss *Tensor) error

	AdamStep(p ref.AdamParams, step int, param, grad, m, v *Tensor) error
	SGDStep(p ref.SGDParams, step int, param, grad, buf *Tensor) error
}

// packLayout places parts of the given lengths one after another, each at
// a multiple of align elements, in a whole whose length is a multiple of 4
// (so that vec4 kernels take it).
func packLayout(lens []int, align int) (offsets []int, total int, err error) {
	if len(lens) == 0 {
		return nil, 0, fmt.Errorf("ops.AllocPacked: no parts")
	}
	for i, n := range lens {
		if err := checkAlloc(n); err != nil {
			return nil, 0, fmt.Errorf("ops.AllocPacked: part %d: %w", i, err)
		}
		offsets = append(offsets, total)
		total += (n + align - 1) / align * align
		if total > maxElements {
			return nil, 0, fmt.Errorf("ops.AllocPacked: %d parts need more than %d elements", len(lens), maxElements)
		}
	}
	return offsets, (total + 3) / 4 * 4, nil
}

// checkTensor reports an error unless t belongs to e, has the element type
// and, when want ≥ 0, want elements. A nil t is an error unless optional,
// an accumulating view unless accumulates.
func checkTensor(e Engine, op, name string, t *Tensor, dtype DType, want int, optional, accumulates bool) error {
	if t == nil {
		if optional {
			return nil
		}
		return fmt.Errorf("ops.%s: %s is missing", op, name)
	}
	if t.owner != e {
		return fmt.Errorf("ops.%s: %s belongs to another engine", op, name)
	}
	if t.dtype != dtype {
		return fmt.Errorf("ops.%s: %s is %s, want %s", op, name, t.dtype, dtype)
	}
	if want >= 0 && t.n != want {
		return fmt.Errorf("ops.%s: %s has %d elements, want %d", op, name, t.n, want)
	}
	if t.accumulate && !accumulates {
		return fmt.Errorf("ops.%s: %s is an accumulating view (ops.Accumulate), which only input gradients take", op, name)
	}
	return nil
}

// arg is one tensor argument of an operation, for checkArgs.
type arg struct {
	name     string
	t        *Tensor
	want     int // -1: any length
	optional bool
	labels   bool
	// accumulates: an input gradient, which may be an accumulating view.
	accumulates bool
}

func in(name string, t *Tensor, want int) arg { return arg{name: name, t: t, want: want} }
func opt(name string, t *Tensor, want int) arg {
	return arg{name: name, t: t, want: want, optional: true}
}

// accumulating marks an input gradient, which may be an accumulating view.
func (a arg) accumulating() arg {
	a.accumulates = true
	return a
}
func labels(name string, t *Tensor, want int) arg {
	return arg{name: name, t: t, want: want, labels: true}
}

// checkArgs validates the parameters (when v is not nil) and every tensor.
func checkArgs(e Engine, op string, v interface{ Validate() error }, args ...arg) error {
	if v != nil {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("ops.%s: %w", op, err)
		}
	}
	for _, a := range args {
		dt := Float32
		if a.labels {
			dt = Int32
		}
		if err := checkTensor(e, op, a.name, a.t, dt, a.want, a.optional, a.accumulates); err != nil {
			return err
		}
	}
	return nil
}

// Both engines implement Engine.
var (
	_ Engine = (*CPU)(nil)
	_ Engine = (*GPU)(nil)
)

// checkSavedStats validates the optional saved statistics of an instance
// norm's backward pass: both or neither, one value per (sample, channel).
func checkSavedStats(e Engine, op string, p ref.NormParams, mean, invStd *Tensor) error {
	if (mean == nil) != (invStd == nil) {
		return fmt.Errorf("ops.%s: give both saved statistics mean and invStd or neither (mean given: %t, invStd given: %t)",
			op, mean != nil, invStd != nil)
	}
	return checkArgs(e, op, p, opt("mean", mean, p.StatsLen()), opt("invStd", invStd, p.StatsLen()))
}

// checkDepthwiseStats validates DepthwiseConv3dStats' arguments and returns
// its input: x1, or x1 and x2 joined at split.
func checkDepthwiseStats(e Engine, op string, p ref.DepthwiseParams, np ref.NormParams, split int, x1, x2, w, b, y, mean, invStd *Tensor) (dwPlanes, error) {
	x := dwPlanes{first: x1}
	if x2 != nil {
		if _, err := checkJoined(e, op, p, split, x1, x2, nil, nil); err != nil {
			return x, err
		}
		x = dwPlanes{x1, x2, split}
	} else if err := checkArgs(e, op, p, in("x1", x1, p.InputLen())); err != nil {
		return x, err
	}
	if err := np.Validate(); err != nil {
		return x, fmt.Errorf("ops.%s: %w", op, err)
	}
	if np.N != p.N || np.C != p.C || np.Size != p.Size {
		return x, fmt.Errorf("ops.%s: the norm's shape (N %d, C %d, size %v) is not the output's (N %d, C %d, size %v)",
			op, np.N, np.C, np.Size, p.N, p.C, p.Size)
	}
	return x, checkArgs(e, op, nil, in("w", w, p.WeightLen()), opt("b", b, p.BiasLen()), in("y", y, p.OutputLen()),
		in("mean", mean, np.StatsLen()), in("invStd", invStd, np.StatsLen()))
}

// checkJoined validates a joined depthwise convolution's split, its input
// parts and, optionally, their gradients (both or neither), and returns
// the concatenation of the parts.
func checkJoined(e Engine, op string, p ref.DepthwiseParams, split int, x1, x2, dx1, dx2 *Tensor) (ref.ConcatParams, error) {
	cp := ref.ConcatParams{N: p.N, Channels: []int{split, p.C - split}, Size: p.Size}
	if err := p.Validate(); err != nil {
		return cp, fmt.Errorf("ops.%s: %w", op, err)
	}
	if split < 1 || split >= p.C {
		return cp, fmt.Errorf("ops.%s: split %d must leave channels to both parts of the %d", op, split, p.C)
	}
	if p.UpFactor() != (ref.Dims3{1, 1, 1}) {
		return cp, fmt.Errorf("ops.%s: a joined input cannot be up-sampled (Up %v)", op, p.Up)
	}
	if (dx1 == nil) != (dx2 == nil) {
		return cp, fmt.Errorf("ops.%s: give both parts of the input gradient, dx1 and dx2, or neither (dx1 given: %t, dx2 given: %t)",
			op, dx1 != nil, dx2 != nil)
	}
	n1, n2 := p.N*split*p.Size.Voxels(), p.N*(p.C-split)*p.Size.Voxels()
	return cp, checkArgs(e, op, nil, in("x1", x1, n1), in("x2", x2, n2), opt("dx1", dx1, n1).accumulating(), opt("dx2", dx2, n2).accumulating())
}
