package u2net

import (
	"fmt"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/ops/ref"
)

// act is an activation of the graph: its value and, when training, its
// gradient. Several consumers may send gradient to one activation; the first
// to run in the backward pass writes it, later ones add to it.
type act struct {
	c    int
	size ref.Dims3
	v, g *ops.Tensor
	// needGrad is false for the input image: nothing upstream learns.
	needGrad    bool
	gradWritten bool
}

// dsHead is a deep-supervision head: its output at its level's resolution
// can carry a loss of its own.
type dsHead struct {
	level int
	a     *act
}

// builder defines the network once for two uses: declaring the parameters
// (declare is set: only shapes are tracked) and building an executable graph
// on an engine (each layer allocates its output and appends forward and
// backward steps).
type builder struct {
	cfg     Config
	dom     int
	declare bool
	params  map[string]*Param
	order   []*Param

	g     *graph // nil when declaring
	n     int    // batch size
	slope float64
	// heads are the deep-supervision heads met, by level.
	heads []dsHead
	// err is the first error met; later layers are skipped.
	err error
}

// pname returns the name of a parameter of scope. Domain-specific parameters
// and every parameter of independent mode carry the domain's name.
func (b *builder) pname(scope string, perDomain bool, leaf string) (string, int) {
	if perDomain || b.cfg.Mode == ModeIndependent {
		return scope + "." + b.cfg.Domains[b.dom].Name + "." + leaf, b.dom
	}
	return scope + "." + leaf, -1
}

// param declares (or, when building, looks up) a parameter.
func (b *builder) param(scope string, perDomain bool, leaf string, kind paramKind, fanIn int, shape ...int) *Param {
	name, dom := b.pname(scope, perDomain, leaf)
	if p, ok := b.params[name]; ok {
		return p
	}
	p := &Param{Name: name, Shape: shape, Domain: dom, kind: kind, fanIn: fanIn}
	b.params[name] = p
	b.order = append(b.order, p)
	return p
}

func (b *builder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// newAct allocates an activation (value, and gradient when training).
func (b *builder) newAct(c int, size ref.Dims3) *act {
	a := &act{c: c, size: size, needGrad: true}
	if b.declare || b.err != nil {
		return a
	}
	b.g.acts = append(b.g.acts, a)
	if !b.g.training {
		return a // buffers once the graph is complete (graph.planActs)
	}
	var err error
	// Gradients get buffers once the graph is complete (graph.planGrads).
	if a.v, err = b.g.alloc(a.len(b.n)); err != nil {
		b.fail(err)
	}
	return a
}

// value returns the activation's value, nil for no activation. It is read
// when a step runs: an inference graph gives its activations buffers only
// once it is complete.
func (a *act) value() *ops.Tensor {
	if a == nil {
		return nil
	}
	return a.v
}

// len returns the activation's elements for batch n.
func (a *act) len(n int) int { return n * a.c * a.size.Voxels() }

// conv is a dense 3D convolution with bias: kernel k per axis, stride s,
// zero padding before/after per axis.
func (b *builder) conv(scope string, perDomain bool, x *act, cout int, k, s, before, after ref.Dims3) *act {
	fan := x.c * k.Voxels()
	w := b.param(scope, perDomain, "weight", kindWeight, fan, cout, x.c, k[0], k[1], k[2])
	bias := b.param(scope, perDomain, "bias", kindBias, fan, cout)
	p := ref.ConvParams{N: b.n, Cin: x.c, Cout: cout, In: x.size, Kernel: k, Stride: s, PadBefore: before, PadAfter: after}
	var out ref.Dims3
	for a := range out {
		out[a] = (x.size[a]+before[a]+after[a]-k[a])/s[a] + 1
	}
	y := b.newAct(cout, out)
	if b.declare || b.err != nil {
		return y
	}
	p.N = b.n
	g := b.g
	g.step(y, []*act{x}, func(e ops.Engine) error { return e.Conv3d(p, x.v, g.val(w), g.val(bias), y.v) },
		func(e ops.Engine) error {
			dx, done := g.gradOut(x, true)
			if err := e.Conv3dBackward(p, x.v, g.val(w), y.g, dx, g.grad(w), g.grad(bias)); err != nil {
				return err
			}
			return done(e)
		})
	return y
}

// unitIn is a conv unit's input: x, the channel concatenation of x and x2
// (x first), or x up-sampled by up (nearest).
type unitIn struct {
	x, x2 *act
	up    ref.Dims3 // zero: not up-sampled
}

// size is the input's spatial size.
func (in unitIn) size() ref.Dims3 {
	if in.up == (ref.Dims3{}) {
		return in.x.size
	}
	return ref.Dims3{in.x.size[0] * in.up[0], in.x.size[1] * in.up[1], in.x.size[2] * in.up[2]}
}

// planeStats are an instance norm's per-plane statistics, written by the
// layer that makes the norm's input as it writes it.
type planeStats struct {
	np           ref.NormParams
	mean, invStd *ops.Tensor
}

// depthwise is a per-channel k³ convolution with bias, same padding, of its
// input, which it reads in place: a concatenation is never built, nor an
// up-sampled tensor. It also writes the statistics of the instance norm
// (LeakyReLU, no residual) that follows it in a unit
// (DepthwiseConv3dStats), which then need not read its output again.
func (b *builder) depthwise(scope string, in unitIn) (*act, *planeStats) {
	const k = 3
	x, x2 := in.x, in.x2
	c := x.c
	if x2 != nil {
		c += x2.c
	}
	w := b.param(scope, true, "weight", kindWeight, k*k*k, c, 1, k, k, k)
	bias := b.param(scope, true, "bias", kindBias, k*k*k, c)
	y := b.newAct(c, in.size())
	if b.declare || b.err != nil {
		return y, nil
	}
	p := ref.DepthwiseParams{N: b.n, C: c, Size: in.size(), Kernel: k, Up: in.up}
	st := &planeStats{np: ref.NormParams{N: b.n, C: c, Size: y.size, Eps: ref.DefaultNormEps, LeakyReLU: true, Slope: b.slope}}
	g := b.g
	var err error
	if st.mean, err = g.alloc(st.np.StatsLen()); err == nil {
		st.invStd, err = g.alloc(st.np.StatsLen())
	}
	if err != nil {
		b.fail(err)
		return y, nil
	}
	// A joined input is split after x's channels; x2.value() is nil otherwise.
	ins, split := []*act{x}, 0
	if x2 != nil {
		ins, split = []*act{x, x2}, x.c
	}
	forward := func(e ops.Engine) error {
		return e.DepthwiseConv3dStats(p, st.np, split, x.v, x2.value(), g.val(w), g.val(bias), y.v, st.mean, st.invStd)
	}
	if x2 != nil {
		g.step(y, ins, forward, func(e ops.Engine) error {
			dx, done := g.gradOut(x, true)
			dx2, done2 := g.gradOut(x2, true)
			if err := e.DepthwiseConv3dJoinedBackward(p, x.c, x.v, x2.v, g.val(w), y.g, dx, dx2,
				g.grad(w), g.grad(bias)); err != nil {
				return err
			}
			if err := done(e); err != nil {
				return err
			}
			return done2(e)
		})
		return y, st
	}
	g.step(y, ins, forward, func(e ops.Engine) error {
		dx, done := g.gradOut(x, true)
		if err := e.DepthwiseConv3dBackward(p, x.v, g.val(w), y.g, dx, g.grad(w), g.grad(bias)); err != nil {
			return err
		}
		return done(e)
	})
	return y, st
}

// normedPointwise is norm(normScope, x, nil, true) then pointwise(scope,
// false, ·, cout), the normalised tensor never built: the norm's statistics
// st come with x (depthwise writes them), and the convolution normalises x
// as it reads it, forward and for its weight gradient
// (PointwiseConv3dNormed). A training graph then keeps the gradient of the
// normalised tensor for the one backward step that needs it, not its value
// for the whole step. It declares the same parameters as the two layers.
func (b *builder) normedPointwise(normScope, scope string, x *act, st *planeStats, cout int) *act {
	gammaP := b.param(normScope, true, "weight", kindGamma, 1, x.c)
	betaP := b.param(normScope, true, "bias", kindBeta, 1, x.c)
	wP := b.param(scope, false, "weight", kindWeight, x.c, cout, x.c, 1, 1, 1)
	biasP := b.param(scope, false, "bias", kindBias, x.c, cout)
	if b.declare || b.err != nil {
		return b.newAct(cout, x.size)
	}
	np, mean, invStd := st.np, st.mean, st.invStd
	p := ref.PointwiseParams{N: b.n, Cin: x.c, Cout: cout, Size: x.size}
	g := b.g
	conv := func(e ops.Engine, y *act) error {
		return e.PointwiseConv3dNormed(p, np, x.v, g.val(gammaP), g.val(betaP), mean, invStd, g.val(wP), g.val(biasP), y.v)
	}
	if !g.training {
		y := b.newAct(cout, x.size)
		g.step(y, []*act{x}, func(e ops.Engine) error { return conv(e, y) },
			func(ops.Engine) error { return fmt.Errorf("u2net: an inference graph has no backward pass") })
		return y
	}
	// h, the normalised tensor, has a gradient but no value.
	h := &act{c: x.c, size: x.size, needGrad: true}
	g.acts = append(g.acts, h)
	g.step(h, []*act{x}, noop, func(e ops.Engine) error {
		dx, done := g.gradOut(x, false)
		if err := e.InstanceNorm3dBackward(np, x.v, nil, g.val(gammaP), g.val(betaP), mean, invStd, h.g, dx, nil,
			g.grad(gammaP), g.grad(betaP)); err != nil {
			return err
		}
		return done(e)
	})
	y := b.newAct(cout, x.size)
	g.step(y, []*act{h}, func(e ops.Engine) error { return conv(e, y) }, func(e ops.Engine) error {
		dh, done := g.gradOut(h, false)
		if err := e.PointwiseConv3dNormedBackward(p, np, x.v, g.val(gammaP), g.val(betaP), mean, invStd, g.val(wP), y.g, dh,
			g.grad(wP), g.grad(biasP)); err != nil {
			return err
		}
		return done(e)
	})
	return y
}

// pointwise is a 1×1×1 convolution with bias.
func (b *builder) pointwise(scope string, perDomain bool, x *act, cout int) *act {
	w := b.param(scope, perDomain, "weight", kindWeight, x.c, cout, x.c, 1, 1, 1)
	bias := b.param(scope, perDomain, "bias", kindBias, x.c, cout)
	y := b.newAct(cout, x.size)
	if b.declare || b.err != nil {
		return y
	}
	p := ref.PointwiseParams{N: b.n, Cin: x.c, Cout: cout, Size: x.size}
	g := b.g
	g.step(y, []*act{x}, func(e ops.Engine) error { return e.PointwiseConv3d(p, x.v, g.val(w), g.val(bias), y.v) },
		func(e ops.Engine) error {
			dx, done := g.gradOut(x, false)
			if err := e.PointwiseConv3dBackward(p, x.v, g.val(w), y.g, dx, g.grad(w), g.grad(bias)); err != nil {
				return err
			}
			return done(e)
		})
	return y
}

// convTranspose up-samples with a transposed convolution, kernel = stride.
func (b *builder) convTranspose(scope string, x *act, cout int, s ref.Dims3) *act {
	fan := cout * s.Voxels() // PyTorch takes fan-in from weight dim 1 for transposed convs
	w := b.param(scope, false, "weight", kindWeight, fan, x.c, cout, s[0], s[1], s[2])
	bias := b.param(scope, false, "bias", kindBias, fan, cout)
	y := b.newAct(cout, ref.Dims3{x.size[0] * s[0], x.size[1] * s[1], x.size[2] * s[2]})
	if b.declare || b.err != nil {
		return y
	}
	p := ref.ConvTransposeParams{N: b.n, Cin: x.c, Cout: cout, In: x.size, Kernel: s, Stride: s}
	g := b.g
	g.step(y, []*act{x}, func(e ops.Engine) error { return e.ConvTranspose3d(p, x.v, g.val(w), g.val(bias), y.v) },
		func(e ops.Engine) error {
			dx, done := g.gradOut(x, true)
			if err := e.ConvTranspose3dBackward(p, x.v, g.val(w), y.g, dx, g.grad(w), g.grad(bias)); err != nil {
				return err
			}
			return done(e)
		})
	return y
}

// norm is a per-domain affine instance norm, then, when res is not nil,
// the residual res added, then optionally LeakyReLU(0.01).
func (b *builder) norm(scope string, x, res *act, leaky bool) *act {
	gamma := b.param(scope, true, "weight", kindGamma, 1, x.c)
	beta := b.param(scope, true, "bias", kindBeta, 1, x.c)
	y := b.newAct(x.c, x.size)
	if b.declare || b.err != nil {
		return y
	}
	p := ref.NormParams{N: b.n, C: x.c, Size: x.size, Eps: ref.DefaultNormEps, Residual: res != nil,
		LeakyReLU: leaky, Slope: b.slope}
	g := b.g
	inputs := []*act{x}
	if res != nil {
		inputs = append(inputs, res)
	}
	// A training graph keeps the forward pass's statistics for the
	// backward pass, which then need not compute them again.
	var mean, invStd *ops.Tensor
	if g.training {
		var err error
		if mean, err = g.alloc(p.StatsLen()); err == nil {
			invStd, err = g.alloc(p.StatsLen())
		}
		if err != nil {
			b.fail(err)
			return y
		}
	}
	g.step(y, inputs, func(e ops.Engine) error {
		return e.InstanceNorm3d(p, x.v, res.value(), g.val(gamma), g.val(beta), y.v, mean, invStd)
	},
		func(e ops.Engine) error {
			dx, done := g.gradOut(x, false)
			var dr *ops.Tensor
			doneR := noop
			if res != nil {
				dr, doneR = g.gradOut(res, false)
			}
			if err := e.InstanceNorm3dBackward(p, x.v, res.value(), g.val(gamma), g.val(beta), mean, invStd, y.g, dx, dr,
				g.grad(gamma), g.grad(beta)); err != nil {
				return err
			}
			if err := done(e); err != nil {
				return err
			}
			return doneR(e)
		})
	return y
}

// add sums two activations of the same shape.
func (b *builder) add(x1, x2 *act) *act {
	y := b.newAct(x1.c, x1.size)
	if b.declare || b.err != nil {
		return y
	}
	g := b.g
	g.step(y, []*act{x1, x2}, func(e ops.Engine) error { return e.Add(x1.v, x2.v, y.v) },
		func(e ops.Engine) error {
			for _, x := range []*act{x1, x2} {
				dx, done := g.gradOut(x, false)
				if dx == nil {
					continue
				}
				if err := e.Copy(dx, y.g); err != nil {
					return err
				}
				if err := done(e); err != nil {
					return err
				}
			}
			return nil
		})
	return y
}

// upsample repeats each voxel by factor f per axis (nearest).
func (b *builder) upsample(x *act, f ref.Dims3) *act {
	y := b.newAct(x.c, ref.Dims3{x.size[0] * f[0], x.size[1] * f[1], x.size[2] * f[2]})
	if b.declare || b.err != nil {
		return y
	}
	p := ref.UpsampleParams{N: b.n, C: x.c, In: x.size, Factor: f}
	g := b.g
	g.step(y, []*act{x}, func(e ops.Engine) error { return e.Upsample(p, x.v, y.v) },
		func(e ops.Engine) error {
			dx, done := g.gradOut(x, true)
			if err := e.UpsampleBackward(p, y.g, dx); err != nil {
				return err
			}
			return done(e)
		})
	return y
}

// concat joins two activations along channels, x1 first.
func (b *builder) concat(x1, x2 *act) *act {
	y := b.newAct(x1.c+x2.c, x1.size)
	if b.declare || b.err != nil {
		return y
	}
	p := ref.ConcatParams{N: b.n, Channels: []int{x1.c, x2.c}, Size: x1.size}
	g := b.g
	g.step(y, []*act{x1, x2}, func(e ops.Engine) error { return e.Concat(p, []*ops.Tensor{x1.v, x2.v}, y.v) },
		func(e ops.Engine) error {
			d1, done1 := g.gradOut(x1, false)
			d2, done2 := g.gradOut(x2, false)
			if err := e.Split(p, y.g, []*ops.Tensor{d1, d2}); err != nil {
				return err
			}
			if err := done1(e); err != nil {
				return err
			}
			return done2(e)
		})
	return y
}

// unit is the network's conv unit (cin → cout) and the activation that
// follows it everywhere, act(res + unit(x)) where res (the residual block's
// input) is not nil; the residual and the activation are fused into the
// unit's last norm. The universal unit's depthwise convolution reads a
// concatenated or up-sampled input in place (the dense units build it),
// and its pointwise convolution normalises its input as it reads it.
// Universal: [D] depthwise 3³ → [D] IN → act → [S] pointwise → [D] IN.
// Shared and independent: dense conv k³ → [D] IN.
func (b *builder) unit(scope string, in unitIn, cout, k int, res *act) *act {
	if b.cfg.Mode == ModeUniversal {
		h, st := b.depthwise(scope+".dw", in)
		h = b.normedPointwise(scope+".dwnorm", scope+".pw", h, st, cout)
		return b.norm(scope+".norm", h, res, true)
	}
	x := in.x
	switch {
	case in.x2 != nil:
		x = b.concat(x, in.x2)
	case in.up != (ref.Dims3{}):
		x = b.upsample(x, in.up)
	}
	pad := ref.Dims3{k / 2, k / 2, k / 2}
	h := b.conv(scope+".conv", false, x, cout, ref.Dims3{k, k, k}, ref.Dims3{1, 1, 1}, pad, pad)
	return b.norm(scope+".norm", h, res, true)
}

// define builds the whole network for the builder's domain on input x and
// returns the logits.
func (b *builder) define(x *act) *act {
	cfg := b.cfg
	L := cfg.Levels()
	one := ref.Dims3{1, 1, 1}
	three := ref.Dims3{3, 3, 3}

	h := b.conv("in.conv", true, x, cfg.Channels(0), three, one, one, one)
	h = b.norm("in.norm", h, nil, true)

	skips := make([]*act, L)
	for i := 0; i < L; i++ {
		scope := fmt.Sprintf("enc%d", i)
		c := cfg.Channels(i)
		var res *act
		if cfg.Residual {
			res = h
		}
		a := b.unit(scope+".u1", unitIn{x: h}, c, 3, nil)
		skips[i] = b.unit(scope+".u2", unitIn{x: a}, c, 3, res)
		if i == L-1 {
			break
		}
		// "Same" padding for the strided conv: 0 before and 1 after on a
		// stride-2 axis, 1 and 1 on a stride-1 axis.
		s := cfg.Stride(i)
		var before, after ref.Dims3
		for ax := range s {
			before[ax], after[ax] = 1, 1
			if s[ax] == 2 {
				before[ax] = 0
			}
		}
		h = b.conv(fmt.Sprintf("down%d.conv", i), false, skips[i], cfg.Channels(i+1), three, ref.Dims3(s), before, after)
		h = b.norm(fmt.Sprintf("down%d.norm", i), h, nil, true)
	}

	deeper := skips[L-1]
	outs := make([]*act, L)
	for i := L - 2; i >= 0; i-- {
		scope := fmt.Sprintf("dec%d", i)
		c := cfg.Channels(i)
		s := ref.Dims3(cfg.Stride(i))
		var up *act
		if cfg.Upsample == UpsampleTranspose {
			up = b.convTranspose(scope+".up.tconv", deeper, c, s)
			up = b.norm(scope+".up.norm", up, nil, true)
		} else {
			in := unitIn{x: deeper}
			if s != (ref.Dims3{1, 1, 1}) {
				in.up = s
			}
			up = b.unit(scope+".up", in, c, 3, nil)
		}
		h := b.unit(scope+".u1", unitIn{x: up, x2: skips[i]}, c, 3, nil)
		k := 3
		if cfg.Mode != ModeUniversal {
			k = 1 // the reference's dense decoders end with a 1×1×1 unit
		}
		h = b.unit(scope+".u2", unitIn{x: h}, c, k, nil)
		outs[i] = h
		deeper = h
	}

	classes := cfg.Domains[b.dom].Classes
	var ds *act
	if cfg.DeepSupervision {
		for i := min(2, L-2); i >= 1; i-- {
			t := b.pointwise(fmt.Sprintf("ds%d.conv", i), true, outs[i], classes)
			t = b.norm(fmt.Sprintf("ds%d.norm", i), t, nil, true)
			b.heads = append(b.heads, dsHead{level: i, a: t})
			if ds != nil {
				t = b.add(t, ds)
			}
			ds = b.upsample(t, ref.Dims3(cfg.Stride(i-1)))
		}
	}
	last := skips[0]
	if L > 1 {
		last = outs[0]
	}
	logits := b.pointwise("out.conv", true, last, classes)
	if ds != nil {
		logits = b.add(logits, ds)
	}
	return logits
}
