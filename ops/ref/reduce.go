package ref

import "fmt"

// ChannelSum writes into sums[c] the sum of x[n, c, ...] over the batch and
// every voxel: the bias gradient of a convolution whose output gradient is x.
func ChannelSum(n, c int, size Dims3, x, sums []float32) error {
	const op = "ref.ChannelSum"
	err := firstErr(checkSize("N", n), checkSize("C", c), size.checkPositive("size"))
	if err == nil {
		err = checkCount("input", shape5(n, c, size)...)
	}
	if err != nil {
		return fmt.Errorf("%s: N=%d C=%d size=%v: %w", op, n, c, size, err)
	}
	if err := firstErr(
		checkLen(op, "input", len(x), shape5(n, c, size)...),
		checkLen(op, "sums", len(sums), c),
	); err != nil {
		return err
	}
	channelSum(x, sums, n, c, size.Voxels())
	return nil
}

// channelSum sums x [n, c, vox] over n and vox into out [c], in float64.
func channelSum[T float](x, out []T, n, c, vox int) {
	for ch := 0; ch < c; ch++ {
		var s float64
		for b := 0; b < n; b++ {
			for _, v := range x[(b*c+ch)*vox : (b*c+ch+1)*vox] {
				s += float64(v)
			}
		}
		out[ch] = T(s)
	}
}

// addBias adds b[c] to every voxel of channel c of acc [n, c, vox]; a nil b
// adds nothing.
func addBias[T float](acc []float64, b []T, n, c, vox int) {
	if len(b) == 0 {
		return
	}
	for i := range acc {
		acc[i] += float64(b[(i/vox)%c])
	}
}

// storeOpt is store for an output that may be absent.
func storeOpt[T float](dst []T, src []float64) {
	if len(dst) > 0 {
		store(dst, src)
	}
}

// tapConv is a convolution family as the shared reference loops see it:
// its taps (input, weight and output index of every product) and shapes.
type tapConv interface {
	Validate() error
	taps(f func(xi, wi, yi int))
	weightShape() []int
	ioShapes() (in, out []int) // [N, C, D, H, W] each
}

// tapForward checks the arguments of op and computes y = Σ over the taps
// of w·x, plus the bias b per output channel, in float64: the forward pass
// of every convolution.
func tapForward[T float](op string, p tapConv, x, w, b, y []T) error {
	if err := p.Validate(); err != nil {
		return wrap(op, err)
	}
	in, out := p.ioShapes()
	if err := firstErr(
		checkLen(op, "input", len(x), in...),
		checkLen(op, "weight", len(w), p.weightShape()...),
		checkOptLen(op, "bias", len(b), out[1]),
		checkLen(op, "output", len(y), out...),
	); err != nil {
		return err
	}
	acc := make([]float64, len(y))
	p.taps(func(xi, wi, yi int) { acc[yi] += float64(w[wi]) * float64(x[xi]) })
	addBias(acc, b, out[0], out[1], out[2]*out[3]*out[4])
	store(y, acc)
	return nil
}

// tapBackward checks the arguments of op and computes the gradients of
// tapForward: dx and dw through the taps, db as the per-channel sum of dy;
// any of them may be nil.
func tapBackward[T float](op string, p tapConv, x, w, dy, dx, dw, db []T) error {
	if err := p.Validate(); err != nil {
		return wrap(op, err)
	}
	in, out := p.ioShapes()
	if err := firstErr(
		checkLen(op, "input", len(x), in...),
		checkLen(op, "weight", len(w), p.weightShape()...),
		checkLen(op, "output gradient", len(dy), out...),
		checkOptLen(op, "input gradient", len(dx), in...),
		checkOptLen(op, "weight gradient", len(dw), p.weightShape()...),
		checkOptLen(op, "bias gradient", len(db), out[1]),
	); err != nil {
		return err
	}
	gx := make([]float64, len(x))
	gw := make([]float64, len(w))
	p.taps(func(xi, wi, yi int) {
		g := float64(dy[yi])
		gx[xi] += float64(w[wi]) * g
		gw[wi] += float64(x[xi]) * g
	})
	storeOpt(dx, gx)
	storeOpt(dw, gw)
	if len(db) > 0 {
		channelSum(dy, db, out[0], out[1], out[2]*out[3]*out[4])
	}
	return nil
}
