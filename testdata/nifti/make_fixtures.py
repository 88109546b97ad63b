#!/usr/bin/python3
"""Writes the NIfTI fixtures of u2net/nifti's tests with nibabel.

Run from this folder with Debian's python3-nibabel and python3-numpy:

    /usr/bin/python3 make_fixtures.py

It writes small .nii/.nii.gz files (one per datatype, byte order, scaling and
geometry case) and fixtures.json, which records for each file what nibabel
reads from it: shape, on-disk dtype, the voxel values in file order (x
fastest), the best affine, the qform and sform affines and codes, the zooms
and the scaling.
"""
import json
import math
import os

import numpy as np
import nibabel as nib

rng = np.random.RandomState(20261127)
SHAPE = (5, 4, 3)  # x, y, z


def rot(ax, deg):
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    m = np.eye(4)
    i, j = [(1, 2), (0, 2), (0, 1)][ax]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def affine(zooms, offset, rotation=np.eye(4)):
    a = rotation @ np.diag(list(zooms) + [1.0])
    a[:3, 3] = offset
    return a


def data_for(dtype, shape=SHAPE):
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    n = int(np.prod(shape))
    if info is not None:
        v = rng.randint(info.min, int(info.max) + 1, size=n, dtype=np.int64)
        v[0], v[1] = info.min, info.max
        return v.astype(dtype).reshape(shape, order="F")
    v = rng.standard_normal(n) * 1000
    v[0] = 0.0
    return v.astype(dtype).reshape(shape, order="F")


def save(img, name, endian=None):
    if endian is not None:
        hdr = img.header.as_byteswapped(endian)
        img = img.__class__(np.asanyarray(img.dataobj), None, header=hdr)
    nib.save(img, name)


def set_scaling(name, slope, inter):
    """Rewrites the header of an uncompressed file with the given scaling."""
    with open(name, "r+b") as f:
        hdr = nib.Nifti1Header.from_fileobj(f)
        hdr.set_slope_inter(slope, inter)
        f.seek(0)
        hdr.write_to(f)


def main():
    files = []
    base = affine((1.5, 2.0, 3.0), (-10.0, 20.5, 7.25), rot(2, 30) @ rot(0, 10))

    for dt in ["uint8", "int8", "int16", "uint16", "int32", "float32", "float64"]:
        img = nib.Nifti1Image(data_for(np.dtype(dt)), base)
        img.set_data_dtype(dt)
        name = f"{dt}.nii"
        save(img, name)
        files.append(name)

    # Big-endian files, NIfTI-1 and NIfTI-2.
    img = nib.Nifti1Image(data_for(np.dtype("int16")), base)
    img.set_data_dtype("int16")
    save(img, "int16_be.nii", ">")
    files.append("int16_be.nii")
    img = nib.Nifti1Image(data_for(np.dtype("float64")), base)
    img.set_data_dtype("float64")
    save(img, "float64_be.nii", ">")
    files.append("float64_be.nii")

    # Scaling chosen by nibabel for float data stored as int16.
    f = rng.uniform(-10.0, 50.5, size=SHAPE)
    img = nib.Nifti1Image(f, base)
    img.set_data_dtype("int16")
    save(img, "scaled_auto_int16.nii")
    files.append("scaled_auto_int16.nii")

    # Explicit scaling written into the header.
    img = nib.Nifti1Image(data_for(np.dtype("uint8")), base)
    img.set_data_dtype("uint8")
    save(img, "scaled_uint8.nii")
    set_scaling("scaled_uint8.nii", 0.5, -10.0)
    files.append("scaled_uint8.nii")

    # qform only, with a left-handed frame (qfac = -1).
    q = affine((0.8, 0.9, 2.5), (3.0, -4.0, 5.0), rot(1, 25) @ rot(2, -40))
    q[:3, 2] *= -1
    img = nib.Nifti1Image(data_for(np.dtype("float32")), None)
    img.header.set_qform(q, code=1)
    img.header.set_sform(None, code=0)
    save(img, "qform_only.nii")
    files.append("qform_only.nii")

    # qform of a 180° rotation: the quaternion's a is 0.
    q = affine((1.0, 1.0, 1.0), (1.0, 2.0, 3.0))
    q[1, 1] = q[2, 2] = -1
    img = nib.Nifti1Image(data_for(np.dtype("int16")), None)
    img.header.set_qform(q, code=2)
    img.header.set_sform(None, code=0)
    save(img, "qform_flip.nii")
    files.append("qform_flip.nii")

    # sform with shear (takes precedence over a different qform).
    s = affine((1.2, 1.1, 2.0), (9.0, 8.0, -7.0))
    s[0, 1] = 0.3
    s[2, 0] = -0.2
    img = nib.Nifti1Image(data_for(np.dtype("float32")), None)
    img.header.set_qform(affine((2.0, 2.0, 2.0), (0.0, 0.0, 0.0)), code=1)
    img.header.set_sform(s, code=2)
    save(img, "sform.nii")
    files.append("sform.nii")

    # Neither qform nor sform: the NIfTI-1 method 1 (pixdim diagonal).
    img = nib.Nifti1Image(data_for(np.dtype("int16")), None)
    img.header.set_zooms((1.5, 2.5, 3.5))
    img.header.set_qform(None, code=0)
    img.header.set_sform(None, code=0)
    save(img, "noform.nii")
    files.append("noform.nii")

    # 4D (two channels), compressed.
    img = nib.Nifti1Image(data_for(np.dtype("float32"), SHAPE + (2,)), base)
    img.set_data_dtype("float32")
    save(img, "4d.nii.gz")
    files.append("4d.nii.gz")

    # A compressed label map.
    lab = rng.randint(0, 3, size=SHAPE).astype(np.uint8)
    img = nib.Nifti1Image(lab, base)
    img.set_data_dtype("uint8")
    save(img, "labels.nii.gz")
    files.append("labels.nii.gz")

    # NIfTI-2, little- and big-endian, one of them compressed and 4D.
    img = nib.Nifti2Image(data_for(np.dtype("float32")), base)
    img.set_data_dtype("float32")
    save(img, "nifti2.nii")
    files.append("nifti2.nii")
    img = nib.Nifti2Image(data_for(np.dtype("int16"), SHAPE + (3,)), base)
    img.set_data_dtype("int16")
    save(img, "nifti2_be.nii.gz", ">")
    files.append("nifti2_be.nii.gz")

    out = {}
    for name in files:
        img = nib.load(name)
        hdr = img.header
        # nibabel moves the scaling from the header into the data proxy.
        slope, inter = float(img.dataobj.slope), float(img.dataobj.inter)
        qform, qcode = hdr.get_qform(coded=True)
        sform, scode = hdr.get_sform(coded=True)
        out[name] = {
            "version": 2 if isinstance(img, nib.Nifti2Image) else 1,
            "big_endian": hdr.endianness == ">",
            "shape": list(img.shape),
            "dtype": str(hdr.get_data_dtype().newbyteorder("=")),
            "values": [float(v) for v in np.asarray(img.get_fdata()).ravel(order="F")],
            "affine": img.affine.tolist(),
            "qform": hdr.get_qform().tolist(),
            "qform_code": int(qcode),
            "sform": hdr.get_sform().tolist(),
            "sform_code": int(scode),
            "zooms": [float(z) for z in hdr.get_zooms()[:3]],
            "slope": slope,
            "inter": inter,
        }
    with open("fixtures.json", "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    main()
