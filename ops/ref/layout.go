package ref

import "fmt"

// ConcatParams describes the concatenation along the channel axis of parts
// with the same batch size and spatial size (PyTorch's torch.cat(dim=1)).
// Split is its backward.
type ConcatParams struct {
	N        int   // batch size
	Channels []int // channels of each part, in order
	Size     Dims3 // spatial size of every part and of the output
}

func (p ConcatParams) String() string {
	return fmt.Sprintf("ConcatParams{N=%d Channels=%v Size=%v}", p.N, p.Channels, p.Size)
}

// Validate reports whether the sizes describe a valid concatenation.
func (p ConcatParams) Validate() error {
	err := firstErr(checkSize("N", p.N), p.Size.checkPositive("size"))
	if err == nil && len(p.Channels) == 0 {
		err = fmt.Errorf("no parts")
	}
	total := 0
	for i, c := range p.Channels {
		if err != nil {
			break
		}
		err = checkSize(fmt.Sprintf("channels of part %d", i), c)
		total += c
	}
	if err == nil {
		err = firstErr(checkSize("output channels", total), checkCount("output", shape5(p.N, total, p.Size)...))
	}
	if err != nil {
		return fmt.Errorf("%v: %w", p, err)
	}
	return nil
}

// OutputChannels returns the channels of the output, the sum over the parts.
func (p ConcatParams) OutputChannels() int {
	t := 0
	for _, c := range p.Channels {
		t += c
	}
	return t
}

// PartLen returns the number of elements of part i, N·Channels[i]·D·H·W.
func (p ConcatParams) PartLen(i int) int { return p.N * p.Channels[i] * p.Size.Voxels() }

// OutputLen returns the number of elements of the output.
func (p ConcatParams) OutputLen() int { return p.N * p.OutputChannels() * p.Size.Voxels() }

func (p ConcatParams) checkParts(op, role string, parts int, partLen func(i int) int) error {
	if parts != len(p.Channels) {
		return fmt.Errorf("%s: %d %s given, want %d", op, parts, role, len(p.Channels))
	}
	for i := 0; i < parts; i++ {
		if err := checkLen(op, fmt.Sprintf("%s %d", role, i), partLen(i), shape5(p.N, p.Channels[i], p.Size)...); err != nil {
			return err
		}
	}
	return nil
}

// Concat writes the parts one after the other along the channel axis of y.
func Concat(p ConcatParams, parts [][]float32, y []float32) error { return concat(p, parts, y) }

// Split copies the channels of x into the parts: the inverse of Concat and
// its backward (the gradient of each part is its slice of dy).
func Split(p ConcatParams, x []float32, parts [][]float32) error { return split(p, x, parts) }

// blocks visits, for each sample and part, the matching blocks of a part
// and of the whole tensor.
func (p ConcatParams) blocks(f func(part, partOff, wholeOff, n int)) {
	vox := p.Size.Voxels()
	total := p.OutputChannels()
	for n := 0; n < p.N; n++ {
		c0 := 0
		for i, c := range p.Channels {
			f(i, n*c*vox, (n*total+c0)*vox, c*vox)
			c0 += c
		}
	}
}

func concat[T float](p ConcatParams, parts [][]T, y []T) error {
	const op = "ref.Concat"
	if err := p.Validate(); err != nil {
		return wrap(op, err)
	}
	if err := firstErr(
		p.checkParts(op, "part", len(parts), func(i int) int { return len(parts[i]) }),
		checkLen(op, "output", len(y), shape5(p.N, p.OutputChannels(), p.Size)...),
	); err != nil {
		return err
	}
	p.blocks(func(i, po, wo, n int) { copy(y[wo:wo+n], parts[i][po:po+n]) })
	return nil
}

func split[T float](p ConcatParams, x []T, parts [][]T) error {
	const op = "ref.Split"
	if err := p.Validate(); err != nil {
		return wrap(op, err)
	}
	if err := firstErr(
		checkLen(op, "input", len(x), shape5(p.N, p.OutputChannels(), p.Size)...),
		p.checkParts(op, "part", len(parts), func(i int) int { return len(parts[i]) }),
	); err != nil {
		return err
	}
	p.blocks(func(i, po, wo, n int) { copy(parts[i][po:po+n], x[wo:wo+n]) })
	return nil
}

// UpsampleParams describes nearest up-sampling by an integer factor per
// axis (PyTorch's Upsample(scale_factor=Factor, mode="nearest")): output
// voxel o copies input voxel o/Factor, rounded down.
type UpsampleParams struct {
	N, C   int   // batch size and channels
	In     Dims3 // spatial size of the input
	Factor Dims3 // up-sampling factor per axis
}

func (p UpsampleParams) String() string {
	return fmt.Sprintf("UpsampleParams{N=%d C=%d In=%v Factor=%v}", p.N, p.C, p.In, p.Factor)
}

// Validate reports whether the sizes describe a valid up-sampling.
func (p UpsampleParams) Validate() error {
	err := firstErr(checkSize("N", p.N), checkSize("C", p.C), p.In.checkPositive("input size"), p.Factor.checkPositive("factor"))
	for a := 0; err == nil && a < 3; a++ {
		if _, ok := product(p.In[a], p.Factor[a]); !ok || p.In[a]*p.Factor[a] > maxDim {
			err = fmt.Errorf("output size on axis %c exceeds %d", "DHW"[a], maxDim)
		}
	}
	if err == nil {
		err = checkCount("output", shape5(p.N, p.C, p.OutputSize())...)
	}
	if err != nil {
		return fmt.Errorf("%v: %w", p, err)
	}
	return nil
}

// OutputSize returns the spatial size of the output, In·Factor per axis.
func (p UpsampleParams) OutputSize() Dims3 {
	return Dims3{p.In[0] * p.Factor[0], p.In[1] * p.Factor[1], p.In[2] * p.Factor[2]}
}

// InputLen returns the number of elements of the input.
func (p UpsampleParams) InputLen() int { return p.N * p.C * p.In.Voxels() }

// OutputLen returns the number of elements of the output.
func (p UpsampleParams) OutputLen() int { return p.N * p.C * p.OutputSize().Voxels() }

// pairs calls f with the flat index of every output voxel and of the input
// voxel it copies.
func (p UpsampleParams) pairs(f func(xi, yi int)) {
	in, out := p.In, p.OutputSize()
	for nc := 0; nc < p.N*p.C; nc++ {
		for od := 0; od < out[0]; od++ {
			for oh := 0; oh < out[1]; oh++ {
				for ow := 0; ow < out[2]; ow++ {
					xi := nc*in.Voxels() + (od/p.Factor[0]*in[1]+oh/p.Factor[1])*in[2] + ow/p.Factor[2]
					yi := nc*out.Voxels() + (od*out[1]+oh)*out[2] + ow
					f(xi, yi)
				}
			}
		}
	}
}

// Upsample computes the nearest up-sampling y of x.
func Upsample(p UpsampleParams, x, y []float32) error { return upsample(p, x, y) }

// UpsampleBackward computes dx, where each input voxel's gradient is the sum
// of dy over the block of output voxels that copy it.
func UpsampleBackward(p UpsampleParams, dy, dx []float32) error { return upsampleBackward(p, dy, dx) }

func upsample[T float](p UpsampleParams, x, y []T) error {
	const op = "ref.Upsample"
	if err := p.Validate(); err != nil {
		return wrap(op, err)
	}
	if err := firstErr(
		checkLen(op, "input", len(x), shape5(p.N, p.C, p.In)...),
		checkLen(op, "output", len(y), shape5(p.N, p.C, p.OutputSize())...),
	); err != nil {
		return err
	}
	p.pairs(func(xi, yi int) { y[yi] = x[xi] })
	return nil
}

func upsampleBackward[T float](p UpsampleParams, dy, dx []T) error {
	const op = "ref.UpsampleBackward"
	if err := p.Validate(); err != nil {
		return wrap(op, err)
	}
	if err := firstErr(
		checkLen(op, "output gradient", len(dy), shape5(p.N, p.C, p.OutputSize())...),
		checkLen(op, "input gradient", len(dx), shape5(p.N, p.C, p.In)...),
	); err != nil {
		return err
	}
	acc := make([]float64, len(dx))
	p.pairs(func(xi, yi int) { acc[xi] += float64(dy[yi]) })
	store(dx, acc)
	return nil
}

// PadParams describes zero padding of the spatial axes with a possibly
// different number of zeros before and after each axis (PyTorch's F.pad with
// mode "constant" and value 0). Its backward is a crop.
type PadParams struct {
	N, C   int   // batch size and channels
	In     Dims3 // spatial size of the input
	Before Dims3 // zeros added before the first voxel of each axis
	After  Dims3 // zeros added after the last voxel of each axis
}

func (p PadParams) String() string {
	return fmt.Sprintf("PadParams{N=%d C=%d In=%v Before=%v After=%v}", p.N, p.C, p.In, p.Before, p.After)
}

// Validate reports whether the sizes describe a valid padding.
func (p PadParams) Validate() error {
	err := firstErr(checkSize("N", p.N), checkSize("C", p.C), p.In.checkPositive("input size"),
		p.Before.checkNonNegative("padding before"), p.After.checkNonNegative("padding after"))
	for a := 0; err == nil && a < 3; a++ {
		if p.In[a]+p.Before[a]+p.After[a] > maxDim {
			err = fmt.Errorf("output size on axis %c exceeds %d", "DHW"[a], maxDim)
		}
	}
	if err == nil {
		err = checkCount("output", shape5(p.N, p.C, p.OutputSize())...)
	}
	if err != nil {
		return fmt.Errorf("%v: %w", p, err)
	}
	return nil
}

// OutputSize returns the spatial size of the output, In + Before + After.
func (p PadParams) OutputSize() Dims3 {
	var o Dims3
	for a := range 3 {
		o[a] = p.In[a] + p.Before[a] + p.After[a]
	}
	return o
}

// InputLen returns the number of elements of the input.
func (p PadParams) InputLen() int { return p.N * p.C * p.In.Voxels() }

// OutputLen returns the number of elements of the output.
func (p PadParams) OutputLen() int { return p.N * p.C * p.OutputSize().Voxels() }

// inside reports, for an output voxel, whether it lies on the input and the
// flat index of that input voxel.
func (p PadParams) inside(nc int, o Dims3) (int, bool) {
	var i Dims3
	for a := range 3 {
		i[a] = o[a] - p.Before[a]
		if i[a] < 0 || i[a] >= p.In[a] {
			return 0, false
		}
	}
	return nc*p.In.Voxels() + (i[0]*p.In[1]+i[1])*p.In[2] + i[2], true
}

// Pad computes y = pad(x) with zeros.
func Pad(p PadParams, x, y []float32) error { return pad(p, x, y) }

// PadBackward computes dx as the crop of dy to the input's region.
func PadBackward(p PadParams, dy, dx []float32) error { return padBackward(p, dy, dx) }

func pad[T float](p PadParams, x, y []T) error {
	const op = "ref.Pad"
	if err := p.Validate(); err != nil {
		return wrap(op, err)
	}
	if err := firstErr(
		checkLen(op, "input", len(x), shape5(p.N, p.C, p.In)...),
		checkLen(op, "output", len(y), shape5(p.N, p.C, p.OutputSize())...),
	); err != nil {
		return err
	}
	out := p.OutputSize()
	yi := 0
	var o Dims3
	for nc := 0; nc < p.N*p.C; nc++ {
		for o[0] = 0; o[0] < out[0]; o[0]++ {
			for o[1] = 0; o[1] < out[1]; o[1]++ {
				for o[2] = 0; o[2] < out[2]; o[2]++ {
					y[yi] = 0
					if xi, ok := p.inside(nc, o); ok {
						y[yi] = x[xi]
					}
					yi++
				}
			}
		}
	}
	return nil
}

func padBackward[T float](p PadParams, dy, dx []T) error {
	const op = "ref.PadBackward"
	if err := p.Validate(); err != nil {
		return wrap(op, err)
	}
	if err := firstErr(
		checkLen(op, "output gradient", len(dy), shape5(p.N, p.C, p.OutputSize())...),
		checkLen(op, "input gradient", len(dx), shape5(p.N, p.C, p.In)...),
	); err != nil {
		return err
	}
	out := p.OutputSize()
	yi := 0
	var o Dims3
	for nc := 0; nc < p.N*p.C; nc++ {
		for o[0] = 0; o[0] < out[0]; o[0]++ {
			for o[1] = 0; o[1] < out[1]; o[1]++ {
				for o[2] = 0; o[2] < out[2]; o[2]++ {
					if xi, ok := p.inside(nc, o); ok {
						dx[xi] = dy[yi]
					}
					yi++
				}
			}
		}
	}
	return nil
}
