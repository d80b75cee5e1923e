"""Symbolic equivalence of two networks on a box by matching neuron functions (sound, fast).

Generic MILP or branch-and-bound on ``N_A - N_B`` must branch on both copies of every unstable
neuron (the relaxation does not know two neurons compute the same function), which is hopeless
beyond a few dozen unstable neurons.  This check instead reasons about both networks on the shared
input with *linear forms over atoms*:

- atoms are the constant 1, the inputs ``x_i`` and the post-activations of ``N_A``'s neurons that
  are not stable on the box (``N_A``'s phases come from sound bounds or a :class:`StableSets`);
- every pre-activation of ``N_A`` is a linear form over the atoms: stably active neurons pass their
  form on, inactive ones give 0, an unstable neuron becomes a new atom (or ``lam`` times an
  existing one when its form is ``lam > 0`` times that atom's form: ``relu(lam z) = lam relu(z)``);
- ``N_B``'s neurons are built the same way, but each must *match* a neuron of ``N_A`` (the
  nearest normalised form, within ``match_tol``): its form
  ``f_B = lam f_A + r`` with ``lam > 0``; then its post-activation is taken from ``N_A``'s
  (active: ``f_B``; inactive: 0; unstable: ``lam`` times the atom) with a rigorous error bound
  ``|r| . max|atoms| + (inherited error)`` (ReLU is 1-Lipschitz);
- finally ``|N_A(x) - N_B(x)| <= |f_A - f_B| . max|atoms| + error + slack`` on the box.

Any unmatched neuron of ``N_B`` makes the check give up (None); it never claims equivalence it has
not bounded.  The slack ``1e-11 * (sum of |terms| magnitudes)`` covers float rounding in the forms (each form
is a float64 dot product of at most a few thousand terms, relative error below ``gamma_n ~ 1e-13``).
"""
from __future__ import annotations

import numpy as np

from ..bounds import compute_bounds, pack
from ..network import Network

__all__ = ["form_difference_bound"]


def _phases_and_bounds(A: Network, lb, ub, phase=None, z_ub=None):
    packed = pack(A)
    lbd = compute_bounds(packed, lb, ub, phase, "crown")
    ph = np.where(lbd.stable_active, 1, np.where(lbd.stable_inactive, -1, 0)).astype(np.int8)
    if phase is not None:
        ph = np.where(np.asarray(phase) != 0, phase, ph).astype(np.int8)
    zub = lbd.ub.copy() if z_ub is None else np.minimum(lbd.ub, np.asarray(z_ub, dtype=np.float64))
    return ph, zub, lbd.infeasible


def _normalise(F):
    s = np.max(np.abs(F), axis=1)
    return F / np.where(s > 0, s, 1.0)[:, None], s


def _near(N, N2, v, tol: float = 1e-12):
    """Indices (ascending) of the rows of ``N`` (squared norms ``N2``) that may lie within ``tol``
    of ``v`` in the max norm: a superset, by the Euclidean distance (``<= sqrt(n) tol``) computed
    with one matrix product, with a margin far above its rounding (entries are at most 1 in size).
    The caller then checks the candidates exactly, so the result is the same as checking all rows.
    """
    d2 = N2 + v @ v - 2.0 * (N @ v)
    return np.nonzero(d2 <= v.size * (2.0 * tol) ** 2 + 1e-8)[0]


def form_difference_bound(A: Network, B: Network, lb, ub, phase=None, match_tol: float = 1e-7,
                          z_ub=None):
    """Sound bound on ``max_i |N_A(x) - N_B(x)|_i`` over the box, or None if ``N_B`` does not match.

    Parameters
    ----------
    A, B : Network -- same input and output sizes
    lb, ub : ndarray (n_inputs,)
    phase : ndarray int8 (A.n_relus,), optional -- certified phases of ``A`` on the box (e.g.
        :attr:`StableSets.phase`); CROWN's are used (and combined) otherwise
    match_tol : float -- largest normalised form distance accepted as a match; any match is
        sound (its residual enters the error bound), a loose one only gives a looser bound
    z_ub : ndarray (A.n_relus,), optional -- sound upper bounds of ``A``'s pre-activations on the
        box from elsewhere (e.g. the maximum of CROWN bounds over sub-boxes that tile it); used
        with CROWN's (the minimum of both) as the atoms' ranges.  The error terms scale with these
        ranges, which whole-box CROWN overestimates by 100x or more in deep layers

    Returns
    -------
    ndarray (n_outputs,) of bounds on ``|N_A - N_B|`` per output, or None
    """
    lb, ub = np.asarray(lb, dtype=np.float64), np.asarray(ub, dtype=np.float64)
    ph, zub, infeasible = _phases_and_bounds(A, lb, ub, phase, z_ub)
    if infeasible:
        return None
    n_in = A.n_inputs
    cap = 1 + n_in + A.n_relus
    amax = np.zeros(cap)
    amax[0] = 1.0
    amax[1:1 + n_in] = np.maximum(np.abs(lb), np.abs(ub))
    G = np.zeros((n_in, cap))
    G[np.arange(n_in), 1 + np.arange(n_in)] = 1.0
    n_atoms = 1 + n_in
    pre_forms, posts, phs, pre_errs = [], [], [], []   # every A neuron: forms, phase, error
    errA = np.zeros(n_in)
    post_errs = []
    # atoms' normalised pre forms (rows), scales and indices, for lam-sharing
    atom_G, atom_s, atom_t = np.zeros((A.n_relus, cap)), np.zeros(A.n_relus), np.zeros(A.n_relus, int)
    atom_n2 = np.zeros(A.n_relus)
    n_shared = 0
    off = 0
    for k, aff in enumerate(A.affines[:-1]):
        F = aff.W @ G
        F[:, 0] += aff.b
        EA = np.abs(aff.W) @ errA
        P = np.zeros_like(F)
        postA = np.zeros(aff.n_out)
        for j in range(aff.n_out):
            p = ph[off + j]
            if p == 1:
                P[j] = F[j]
                postA[j] = EA[j]
            elif p == 0:
                f = F[j]
                s = np.max(np.abs(f))
                hit = None
                if s > 0 and n_shared:
                    c = _near(atom_G[:n_shared], atom_n2[:n_shared], f / s)
                    lam = s / atom_s[c]
                    R = np.abs(f - (lam[:, None] * atom_G[c]) * atom_s[c, None])
                    ok = np.nonzero(np.max(R, axis=1) <= 1e-12 * s)[0]
                    if ok.size:                 # the first atom that matches
                        q = int(ok[0])
                        hit = (int(atom_t[c[q]]), float(lam[q]))
                        postA[j] = EA[j] + R[q] @ amax
                if hit is None:
                    t = n_atoms
                    n_atoms += 1
                    amax[t] = max(float(zub[off + j]), 0.0)
                    atom_G[n_shared] = f / s if s > 0 else f
                    atom_n2[n_shared] = atom_G[n_shared] @ atom_G[n_shared]
                    atom_s[n_shared] = s if s > 0 else 1.0
                    atom_t[n_shared] = t
                    n_shared += 1
                    hit = (t, 1.0)
                P[j, hit[0]] = hit[1]
        pre_forms.append(F)
        posts.append(P)
        phs.append(ph[off:off + aff.n_out])
        pre_errs.append(EA)
        post_errs.append(postA)
        off += aff.n_out
        G, errA = P, postA
    FA = A.affines[-1].W @ G
    FA[:, 0] += A.affines[-1].b
    EA_out = np.abs(A.affines[-1].W) @ errA
    if pre_forms:
        allE = np.concatenate(pre_errs)
        allPE = np.concatenate(post_errs)
        allF = np.vstack(pre_forms)
        allP = np.vstack(posts)
        allph = np.concatenate(phs)
        NA, sA = _normalise(allF)
        NA2 = np.einsum("ij,ij->i", NA, NA)
    # B, neuron by neuron, matched against A
    G = np.zeros((n_in, cap))
    G[np.arange(n_in), 1 + np.arange(n_in)] = 1.0
    err = np.zeros(n_in)
    mag = 0.0
    for aff in B.affines[:-1]:
        F = aff.W @ G
        F[:, 0] += aff.b
        E = np.abs(aff.W) @ err
        mag = max(mag, float(np.max(np.abs(aff.W) @ (np.abs(G) @ amax), initial=0.0)))
        P = np.zeros_like(F)
        newerr = np.zeros(aff.n_out)
        if not pre_forms and aff.n_out:
            return None
        NB, sB = _normalise(F)
        for j in range(aff.n_out):
            if sB[j] == 0.0:        # the constant 0: relu = 0
                newerr[j] = E[j]
                continue
            c = _near(NA, NA2, NB[j], match_tol)
            if not c.size:
                return None
            d = np.max(np.abs(NA[c] - NB[j]), axis=1)
            i = int(c[int(np.argmin(d))])
            if d.min() > match_tol:
                return None
            lam = sB[j] / sA[i]
            r = np.abs(F[j] - lam * allF[i]) @ amax
            e = r + E[j] + lam * allE[i]
            if allph[i] == 1:
                P[j] = F[j]
                newerr[j] = E[j] + e
            elif allph[i] == -1:
                newerr[j] = e
            else:
                P[j] = lam * allP[i]
                newerr[j] = e + lam * allPE[i]
        G, err = P, newerr
    FB = B.affines[-1].W @ G
    FB[:, 0] += B.affines[-1].b
    EB = np.abs(B.affines[-1].W) @ err
    magA = np.abs(FA) @ amax
    magB = np.abs(FB) @ amax
    slack = 1e-11 * (magA + magB + mag + 1.0)
    return np.abs(FA - FB) @ amax + EA_out + EB + slack
