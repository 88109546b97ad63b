package ref

import (
	"fmt"
	"math"
)

// DefaultNormEps is PyTorch's default eps of InstanceNorm3d.
const DefaultNormEps = 1e-5

// DefaultSlope is PyTorch's default negative slope of LeakyReLU.
const DefaultSlope = 0.01

// NormParams describes an instance norm (PyTorch's InstanceNorm3d with
// affine=True and track_running_stats=False) over the voxels of each
// (sample, channel), with an optional residual added after it and an
// optional LeakyReLU after that:
//
//	x̂ = (x − mean(x))/sqrt(var(x) + Eps)
//	z = gamma[c]·x̂ + beta[c] (+ r with Residual)
//	y = LeakyReLU(z, Slope) (or z without LeakyReLU)
//
// which is the end of a residual block, act(r + IN(x)), in one
// pass. The variance is the biased one (divided by the voxel count). Like
// PyTorch, it needs more than one voxel per channel. gamma and beta are [C].
type NormParams struct {
	N, C      int     // batch size and channels
	Size      Dims3   // spatial size of the input and of the output
	Eps       float64 // added to the variance, DefaultNormEps in the network
	Residual  bool    // add the residual r to the affine transform's output
	LeakyReLU bool    // apply LeakyReLU(Slope) after the affine transform
	Slope     float64 // negative slope of the LeakyReLU, DefaultSlope in the network
}

func (p NormParams) String() string {
	return fmt.Sprintf("NormParams{N=%d C=%d Size=%v Eps=%g Residual=%t LeakyReLU=%t Slope=%g}",
		p.N, p.C, p.Size, p.Eps, p.Residual, p.LeakyReLU, p.Slope)
}

// Validate reports whether the parameters describe a valid instance norm.
func (p NormParams) Validate() error {
	err := firstErr(checkSize("N", p.N), checkSize("C", p.C), p.Size.checkPositive("size"))
	if err == nil {
		err = checkCount("input", shape5(p.N, p.C, p.Size)...)
	}
	switch {
	case err != nil:
	case p.Size.Voxels() < 2:
		err = fmt.Errorf("instance norm needs more than one voxel per channel")
	case !(p.Eps > 0) || math.IsInf(p.Eps, 0):
		err = fmt.Errorf("eps %g must be positive and finite", p.Eps)
	case p.LeakyReLU && (math.IsNaN(p.Slope) || math.IsInf(p.Slope, 0)):
		err = fmt.Errorf("slope %g must be finite", p.Slope)
	}
	if err != nil {
		return fmt.Errorf("%v: %w", p, err)
	}
	return nil
}

// InputLen returns the number of elements of the input (and of the
// residual and the output), N·C·D·H·W.
func (p NormParams) InputLen() int { return p.N * p.C * p.Size.Voxels() }

// OutputLen returns the number of elements of the output, equal to InputLen.
func (p NormParams) OutputLen() int { return p.InputLen() }

// ParamLen returns the number of elements of gamma and of beta, C.
func (p NormParams) ParamLen() int { return p.C }

// StatsLen returns the number of elements of the saved mean and inverse
// standard deviation, N·C.
func (p NormParams) StatsLen() int { return p.N * p.C }

func (p NormParams) checkInputs(op string, x, r, gamma, beta int) error {
	xs := shape5(p.N, p.C, p.Size)
	err := firstErr(
		checkLen(op, "input", x, xs...),
		checkLen(op, "gamma", gamma, p.C),
		checkLen(op, "beta", beta, p.C))
	if err != nil {
		return err
	}
	if p.Residual {
		return checkLen(op, "residual", r, xs...)
	}
	if r != 0 {
		return fmt.Errorf("%s: residual given (%d elements) but Residual is false", op, r)
	}
	return nil
}

// InstanceNorm3d computes y as described by [NormParams]. The residual r
// must be nil unless p.Residual. If mean and invStd are not nil they receive,
// per (sample, channel), the mean of x and 1/sqrt(var(x) + Eps); y may be
// nil when only they are wanted.
func InstanceNorm3d(p NormParams, x, r, gamma, beta, y, mean, invStd []float32) error {
	return instanceNorm3d(p, x, r, gamma, beta, y, mean, invStd)
}

// InstanceNormStats writes the statistics InstanceNorm3d saves for x (its
// residual, activation, gamma and beta do not enter them): per (sample,
// channel), the mean of x and 1/sqrt(var(x) + Eps).
func InstanceNormStats(p NormParams, x, mean, invStd []float32) error {
	const op = "ref.InstanceNormStats"
	if err := p.Validate(); err != nil {
		return wrap(op, err)
	}
	if err := firstErr(
		checkLen(op, "input", len(x), shape5(p.N, p.C, p.Size)...),
		checkLen(op, "mean", len(mean), p.N, p.C),
		checkLen(op, "inverse std", len(invStd), p.N, p.C),
	); err != nil {
		return err
	}
	vox := p.Size.Voxels()
	for nc := range p.N * p.C {
		_, m, is := normStats(p, x[nc*vox:(nc+1)*vox])
		mean[nc], invStd[nc] = float32(m), float32(is)
	}
	return nil
}

// InstanceNorm3dBackward computes, from the output gradient dy, the input
// gradient dx, the residual's gradient dr (dy through the LeakyReLU) and the
// gradients dgamma and dbeta; any of them may be nil, and dr must be unless
// p.Residual. It recomputes the statistics from x; x and r must be the
// forward's inputs.
func InstanceNorm3dBackward(p NormParams, x, r, gamma, beta, dy, dx, dr, dgamma, dbeta []float32) error {
	return instanceNorm3dBackward(p, x, r, gamma, beta, dy, dx, dr, dgamma, dbeta)
}

// activate applies the LeakyReLU, when p has one, to the affine transform's
// output z: Slope where z ≤ 0 (or NaN), as PyTorch does.
func (p NormParams) activate(z float64) float64 {
	if p.LeakyReLU && !(z > 0) {
		return z * p.Slope
	}
	return z
}

// normStats returns one (sample, channel) plane of x in float64, its mean
// and its inverse standard deviation.
func normStats[T float](p NormParams, x []T) (u []float64, mean, invStd float64) {
	u = make([]float64, len(x))
	for i := range x {
		u[i] = float64(x[i])
		mean += u[i]
	}
	mean /= float64(len(u))
	var v float64
	for _, ui := range u {
		v += (ui - mean) * (ui - mean)
	}
	v /= float64(len(u))
	return u, mean, 1 / math.Sqrt(v+p.Eps)
}

func instanceNorm3d[T float](p NormParams, x, r, gamma, beta, y, mean, invStd []T) error {
	const op = "ref.InstanceNorm3d"
	if err := p.Validate(); err != nil {
		return wrap(op, err)
	}
	if err := firstErr(
		p.checkInputs(op, len(x), len(r), len(gamma), len(beta)),
		checkOptLen(op, "output", len(y), shape5(p.N, p.C, p.Size)...),
		checkOptLen(op, "mean", len(mean), p.N, p.C),
		checkOptLen(op, "inverse std", len(invStd), p.N, p.C),
	); err != nil {
		return err
	}
	vox := p.Size.Voxels()
	for nc := 0; nc < p.N*p.C; nc++ {
		c := nc % p.C
		lo, hi := nc*vox, (nc+1)*vox
		u, m, is := normStats(p, x[lo:hi])
		for i, ui := range u[:min(len(u), len(y))] {
			z := float64(gamma[c])*(ui-m)*is + float64(beta[c])
			if p.Residual {
				z += float64(r[lo+i])
			}
			y[lo+i] = T(p.activate(z))
		}
		if len(mean) > 0 {
			mean[nc] = T(m)
		}
		if len(invStd) > 0 {
			invStd[nc] = T(is)
		}
	}
	return nil
}

func instanceNorm3dBackward[T float](p NormParams, x, r, gamma, beta, dy, dx, dr, dgamma, dbeta []T) error {
	const op = "ref.InstanceNorm3dBackward"
	if err := p.Validate(); err != nil {
		return wrap(op, err)
	}
	xs := shape5(p.N, p.C, p.Size)
	if err := firstErr(
		p.checkInputs(op, len(x), len(r), len(gamma), len(beta)),
		checkLen(op, "output gradient", len(dy), xs...),
		checkOptLen(op, "input gradient", len(dx), xs...),
		checkOptLen(op, "residual gradient", len(dr), xs...),
		checkOptLen(op, "gamma gradient", len(dgamma), p.C),
		checkOptLen(op, "beta gradient", len(dbeta), p.C),
	); err != nil {
		return err
	}
	if !p.Residual && len(dr) != 0 {
		return fmt.Errorf("%s: residual gradient given (%d elements) but Residual is false", op, len(dr))
	}
	vox := p.Size.Voxels()
	gGamma := make([]float64, p.C)
	gBeta := make([]float64, p.C)
	g := make([]float64, vox)    // gradient at z, before the affine transform's inverse
	xhat := make([]float64, vox) // normalised u
	for nc := 0; nc < p.N*p.C; nc++ {
		c := nc % p.C
		lo, hi := nc*vox, (nc+1)*vox
		u, m, is := normStats(p, x[lo:hi])
		ga, be := float64(gamma[c]), float64(beta[c])
		var sumG, sumGX float64
		for i, ui := range u {
			xhat[i] = (ui - m) * is
			g[i] = float64(dy[lo+i])
			z := ga*xhat[i] + be
			if p.Residual {
				z += float64(r[lo+i])
			}
			// LeakyReLU's derivative, taken as Slope at z = 0 as PyTorch does.
			if p.LeakyReLU && !(z > 0) {
				g[i] *= p.Slope
			}
			if len(dr) > 0 {
				dr[lo+i] = T(g[i])
			}
			sumG += g[i]
			sumGX += g[i] * xhat[i]
		}
		gBeta[c] += sumG
		gGamma[c] += sumGX
		if len(dx) > 0 {
			// dx = invStd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat)), dxhat = gamma·g.
			n := float64(vox)
			for i := range u {
				dx[lo+i] = T(is * ga * (g[i] - sumG/n - xhat[i]*sumGX/n))
			}
		}
	}
	storeOpt(dgamma, gGamma)
	storeOpt(dbeta, gBeta)
	return nil
}
