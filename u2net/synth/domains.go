package synth

import (
	"math"
	"math/rand/v2"

	"github.com/go-gl/mathgl/mgl64"

	"github.com/u2net-vk/u2net/u2net/nifti"
)

// makeCT builds an abdomen-like CT: air, a body of soft tissue with a fatty
// rim and a vertebra, organ A (moderately enhancing) and organ
// B (smaller, strongly enhancing), with scanner-like noise, stored as int16
// Hounsfield units in an LPS-like orientation (x and y flipped).
func makeCT(rng *rand.Rand, size int) volume {
	n := [3]int{jitterSize(rng, size, 1), jitterSize(rng, size, 0.9), jitterSize(rng, size, 0.8)}
	sp := [3]float64{uniform(rng, 0.7, 1.0), 0, uniform(rng, 1.2, 2.5)}
	sp[1] = sp[0]
	rot := mgl64.Diag3(mgl64.Vec3{-1, -1, 1}).Mul3(randomRotation(rng, 4))
	g := newGrid(n, sp, rot, mgl64.Vec3{uniform(rng, -5, 5), uniform(rng, -5, 5), uniform(rng, -20, 20)})
	// The body fills most of the in-plane field of view.
	ext := mgl64.Vec3{float64(n[0]) * sp[0], float64(n[1]) * sp[1], float64(n[2]) * sp[2]}
	body := ellipsoid{radii: mgl64.Vec3{0.46 * ext[0], 0.38 * ext[1], 10 * ext[2]}, rot: mgl64.Ident3()}
	inner := body
	inner.radii = body.radii.Mul(0.88)
	organA := ellipsoid{
		centre: mgl64.Vec3{-0.15 * ext[0], 0.02 * ext[1], 0}.Add(jitter(rng, 0.04*ext[0])),
		radii:  mgl64.Vec3{0.2 * ext[0], 0.17 * ext[1], 0.32 * ext[2]}.Mul(uniform(rng, 0.85, 1.15)),
		rot:    randomRotation(rng, 25),
	}
	organB := ellipsoid{
		centre: mgl64.Vec3{0.2 * ext[0], 0.08 * ext[1], uniform(rng, -0.1, 0.1) * ext[2]}.Add(jitter(rng, 0.03*ext[0])),
		radii:  mgl64.Vec3{0.1 * ext[0], 0.12 * ext[1], 0.25 * ext[2]}.Mul(uniform(rng, 0.8, 1.2)),
		rot:    randomRotation(rng, 30),
	}
	spine := mgl64.Vec2{0, -0.24 * ext[1]}
	huA, huB := uniform(rng, 80, 110), uniform(rng, 150, 210)
	noise := uniform(rng, 8, 20)
	v := volume{shape: g.shape(1), affine: g.affine, image: make([]float32, g.voxels()), label: make([]float32, g.voxels()), dtype: nifti.Int16}
	g.each(func(i int, w mgl64.Vec3) {
		hu := -1000.0
		if lb := body.level(w); lb < 1 {
			hu = -100 + 140*smoothStep(1-inner.level(w), 0.03) // fat rim to tissue
			if d := (mgl64.Vec2{w[0], w[1]}).Sub(spine).Len(); d < 0.07*ext[0] {
				hu = 650
			}
			la, lbb := organA.level(w), organB.level(w)
			switch {
			case lbb < 1:
				v.label[i] = 2
				hu = huB
			case la < 1:
				v.label[i] = 1
				hu = huA
			}
		}
		hu += rng.NormFloat64() * noise
		v.image[i] = float32(math.Round(math.Max(-1024, math.Min(3000, hu))))
	})
	return v
}

// makeMR builds a skull-stripped brain-like two-channel MR: zero outside
// the head, a lesion core and a surrounding oedema whose contrasts differ
// between T1 (both darker than tissue) and T2 (both brighter), each channel
// with its own scanner scale, bias field and noise, in an oblique
// orientation. Stored as 4D float32.
func makeMR(rng *rand.Rand, size int) volume {
	n := [3]int{jitterSize(rng, size, 0.9), jitterSize(rng, size, 1), jitterSize(rng, size, 0.9)}
	s := uniform(rng, 0.9, 1.3)
	sp := [3]float64{s, s * uniform(rng, 0.95, 1.05), s * uniform(rng, 1, 1.4)}
	g := newGrid(n, sp, randomRotation(rng, 15), jitter(rng, 3))
	ext := mgl64.Vec3{float64(n[0]) * sp[0], float64(n[1]) * sp[1], float64(n[2]) * sp[2]}
	head := ellipsoid{radii: mgl64.Vec3{0.4 * ext[0], 0.45 * ext[1], 0.4 * ext[2]}.Mul(uniform(rng, 0.9, 1.05)), rot: randomRotation(rng, 10)}
	r := uniform(rng, 0.09, 0.14) * ext[0]
	c := mgl64.Vec3{uniform(rng, -0.15, 0.15) * ext[0], uniform(rng, -0.15, 0.15) * ext[1], uniform(rng, -0.1, 0.1) * ext[2]}
	core := ellipsoid{centre: c, radii: mgl64.Vec3{r, r * uniform(rng, 0.7, 1.3), r * uniform(rng, 0.7, 1.3)}, rot: randomRotation(rng, 90)}
	edema := ellipsoid{centre: c.Add(jitter(rng, 0.3*r)), radii: core.radii.Mul(uniform(rng, 1.6, 2.2)), rot: randomRotation(rng, 90)}
	wobble := [3]float64{uniform(rng, 0, 2*math.Pi), uniform(rng, 0, 2*math.Pi), uniform(rng, 0.1, 0.2)}
	scale := [2]float64{uniform(rng, 400, 900), uniform(rng, 900, 2000)}
	// tissue, edema, core contrasts per channel (relative to tissue = 1)
	contrast := [2][3]float64{{1, uniform(rng, 0.7, 0.85), uniform(rng, 0.4, 0.6)}, {1, uniform(rng, 1.6, 2.0), uniform(rng, 1.2, 1.4)}}
	bias := [2]biasField{newBias(rng, 0.3, ext[0]), newBias(rng, 0.3, ext[0])}
	noise := [2]float64{uniform(rng, 0.02, 0.06), uniform(rng, 0.02, 0.06)}
	nv := g.voxels()
	v := volume{shape: g.shape(2), affine: g.affine, image: make([]float32, 2*nv), label: make([]float32, nv), dtype: nifti.Float32}
	g.each(func(i int, w mgl64.Vec3) {
		if head.level(w) >= 1 {
			return
		}
		cls := 0
		// A lumpy oedema boundary.
		le := edema.level(w) * (1 + wobble[2]*math.Sin(3*math.Atan2(w[1]-c[1], w[0]-c[0])+wobble[0])*math.Cos(2*w[2]/r+wobble[1]))
		switch {
		case core.level(w) < 1:
			cls = 2
			v.label[i] = 1
		case le < 1:
			cls = 1
			v.label[i] = 2
		}
		// White/grey matter-like texture.
		tex := 1 + 0.08*math.Sin(w[0]*0.35)*math.Sin(w[1]*0.3)*math.Sin(w[2]*0.4)
		for ch := range 2 {
			x := contrast[ch][cls] * tex * bias[ch].at(w) * (1 + rng.NormFloat64()*noise[ch])
			v.image[ch*nv+i] = float32(math.Max(1e-3, x) * scale[ch])
		}
	})
	return v
}

// makeVessel builds anisotropic angiography-like slices: about 0.8 mm in
// plane and 3.5–4.5 mm between slices, few slices, bright tubes of 1–2.5 mm
// radius winding through the slab over a dim background with a bias field.
// Stored as uint16 in RAS orientation with a small tilt.
func makeVessel(rng *rand.Rand, size int) volume {
	n := [3]int{jitterSize(rng, size, 1), jitterSize(rng, size, 1), max(8, jitterSize(rng, size, 0.3))}
	s := uniform(rng, 0.7, 0.9)
	sp := [3]float64{s, s, uniform(rng, 3.5, 4.5)}
	g := newGrid(n, sp, randomRotation(rng, 5), jitter(rng, 2))
	ext := mgl64.Vec3{float64(n[0]) * sp[0], float64(n[1]) * sp[1], float64(n[2]) * sp[2]}
	type tube struct{ x0, y0, ax, ay, wx, wy, px, py, r float64 }
	tubes := make([]tube, 3+rng.IntN(3))
	for k := range tubes {
		tubes[k] = tube{
			x0: uniform(rng, -0.35, 0.35) * ext[0], y0: uniform(rng, -0.35, 0.35) * ext[1],
			ax: uniform(rng, 2, 8), ay: uniform(rng, 2, 8),
			wx: uniform(rng, 0.02, 0.08), wy: uniform(rng, 0.02, 0.08),
			px: uniform(rng, 0, 2*math.Pi), py: uniform(rng, 0, 2*math.Pi),
			r: uniform(rng, 1.0, 2.5),
		}
	}
	bias := newBias(rng, 0.4, ext[0])
	bright, dim := uniform(rng, 700, 1000), uniform(rng, 120, 220)
	noise := uniform(rng, 15, 35)
	v := volume{shape: g.shape(1), affine: g.affine, image: make([]float32, g.voxels()), label: make([]float32, g.voxels()), dtype: nifti.Uint16}
	g.each(func(i int, w mgl64.Vec3) {
		inside := 0.0
		for _, t := range tubes {
			cx := t.x0 + t.ax*math.Sin(t.wx*w[2]+t.px)
			cy := t.y0 + t.ay*math.Cos(t.wy*w[2]+t.py)
			d := math.Hypot(w[0]-cx, w[1]-cy)
			if d < t.r {
				v.label[i] = 1
			}
			inside = math.Max(inside, smoothStep(t.r-d, 0.5))
		}
		x := (dim+(bright-dim)*inside)*bias.at(w) + rng.NormFloat64()*noise
		v.image[i] = float32(math.Round(math.Max(0, math.Min(65535, x))))
	})
	return v
}

// jitter returns a random offset of up to r per axis.
func jitter(rng *rand.Rand, r float64) mgl64.Vec3 {
	return mgl64.Vec3{uniform(rng, -r, r), uniform(rng, -r, r), uniform(rng, -r, r)}
}
