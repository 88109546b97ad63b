package nifti

import (
	"math"

	"github.com/go-gl/mathgl/mgl64"
)

// Affine maps voxel indices (i, j, k, 1) = (x, y, z, 1) to world coordinates
// (usually RAS+ millimetres). Rows are indexed first: a[r][c].
type Affine [4][4]float64

// Apply maps the voxel index (i, j, k) to world coordinates.
func (a Affine) Apply(i, j, k float64) [3]float64 {
	var w [3]float64
	for r := range 3 {
		w[r] = a[r][0]*i + a[r][1]*j + a[r][2]*k + a[r][3]
	}
	return w
}

// Approx reports whether every element of a and b differs by at most tol.
func (a Affine) Approx(b Affine, tol float64) bool {
	for r := range 4 {
		for c := range 4 {
			if !(math.Abs(a[r][c]-b[r][c]) <= tol) {
				return false
			}
		}
	}
	return true
}

// Identity returns the identity affine.
func Identity() Affine {
	return Affine{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}}
}

// Affine returns the voxel-to-world matrix the NIfTI-1 standard prescribes:
// the sform when sform_code > 0, else the qform when qform_code > 0, else
// the diagonal of pixdim[1..3] with a zero offset.
func (h *Header) Affine() Affine {
	switch {
	case h.SformCode > 0:
		return h.SformAffine()
	case h.QformCode > 0:
		return h.QformAffine()
	}
	s := h.Spacing()
	a := Identity()
	for i := range 3 {
		a[i][i] = s[i]
	}
	return a
}

// SformAffine returns the sform rows as an affine, whatever sform_code says.
func (h *Header) SformAffine() Affine {
	a := Identity()
	for r := range 3 {
		a[r] = h.Srow[r]
	}
	return a
}

// QformAffine returns the affine of the quaternion parameters, whatever
// qform_code says: R·diag(dx, dy, qfac·dz) with the offset. The rotation's
// first component is recovered as a = sqrt(1−b²−c²−d²); when that is not
// positive, (b, c, d) is normalised and a = 0, as the standard prescribes.
func (h *Header) QformAffine() Affine {
	b, c, d := h.QuaternB, h.QuaternC, h.QuaternD
	a := 1 - (b*b + c*c + d*d)
	if a < 1e-7 {
		n := math.Sqrt(b*b + c*c + d*d)
		if n > 0 {
			b, c, d = b/n, c/n, d/n
		}
		a = 0
	} else {
		a = math.Sqrt(a)
	}
	r := mgl64.Mat3FromRows(
		mgl64.Vec3{a*a + b*b - c*c - d*d, 2 * (b*c - a*d), 2 * (b*d + a*c)},
		mgl64.Vec3{2 * (b*c + a*d), a*a + c*c - b*b - d*d, 2 * (c*d - a*b)},
		mgl64.Vec3{2 * (b*d - a*c), 2 * (c*d + a*b), a*a + d*d - c*c - b*b},
	)
	qfac := 1.0
	if h.Pixdim[0] < 0 {
		qfac = -1
	}
	dx, dy, dz := qformStep(h.Pixdim[1]), qformStep(h.Pixdim[2]), qformStep(h.Pixdim[3])
	m := r.Mul3(mgl64.Diag3(mgl64.Vec3{dx, dy, qfac * dz}))
	out := Identity()
	for i := range 3 {
		for j := range 3 {
			out[i][j] = m.At(i, j)
		}
	}
	out[0][3], out[1][3], out[2][3] = h.QoffsetX, h.QoffsetY, h.QoffsetZ
	return out
}

// qformStep is the standard's reading of a pixdim for the qform: values that
// are not positive count as 1.
func qformStep(v float64) float64 {
	if v > 0 && !math.IsInf(v, 0) {
		return v
	}
	return 1
}

// SetAffine stores a as the sform (code sformCode, usually 1 = scanner or
// 2 = aligned), sets pixdim[1..3] to the lengths of a's columns and, when
// the 3×3 part is a rotation times a positive diagonal (possibly with a
// flip of the third axis), stores it as the qform too with qformCode;
// otherwise the qform code is set to 0.
func (h *Header) SetAffine(a Affine, sformCode, qformCode int) {
	h.SformCode = sformCode
	for r := range 3 {
		h.Srow[r] = a[r]
	}
	var cols [3]mgl64.Vec3
	for c := range 3 {
		cols[c] = mgl64.Vec3{a[0][c], a[1][c], a[2][c]}
		h.Pixdim[c+1] = cols[c].Len()
	}
	h.QoffsetX, h.QoffsetY, h.QoffsetZ = a[0][3], a[1][3], a[2][3]
	b, c, d, qfac, ok := quaternion(cols)
	if !ok {
		h.QformCode = 0
		h.QuaternB, h.QuaternC, h.QuaternD = 0, 0, 0
		h.Pixdim[0] = 1
		return
	}
	h.QformCode = qformCode
	h.QuaternB, h.QuaternC, h.QuaternD = b, c, d
	h.Pixdim[0] = qfac
}

// quaternion finds (b, c, d) and qfac with R·diag(1, 1, qfac) having the
// normalised columns given; ok is false when the columns are not orthogonal.
func quaternion(cols [3]mgl64.Vec3) (b, c, d, qfac float64, ok bool) {
	for i := range cols {
		n := cols[i].Len()
		if n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
			return 0, 0, 0, 0, false
		}
		cols[i] = cols[i].Mul(1 / n)
	}
	for i := range 3 {
		for j := i + 1; j < 3; j++ {
			if math.Abs(cols[i].Dot(cols[j])) > 1e-4 {
				return 0, 0, 0, 0, false
			}
		}
	}
	r := mgl64.Mat3FromCols(cols[0], cols[1], cols[2])
	qfac = 1
	if r.Det() < 0 {
		qfac = -1
		r = mgl64.Mat3FromCols(cols[0], cols[1], cols[2].Mul(-1))
	}
	q := mgl64.Mat4ToQuat(r.Mat4())
	a := q.W
	b, c, d = q.V[0], q.V[1], q.V[2]
	if a < 0 {
		b, c, d = -b, -c, -d
	}
	return b, c, d, qfac, true
}
