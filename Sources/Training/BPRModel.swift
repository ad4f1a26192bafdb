/// Matrix factorisation with the BPR pairwise loss (Rendle et al. 2009): score(u, i) = <p_u, q_i>.
/// For a triple (u, i+, j-): x = score(u,i) - score(u,j), loss = -log sigmoid(x) + l2 * (|p_u|^2 + |q_i|^2 + |q_j|^2).
/// Gradients (exact, checked against finite differences in the tests), with g = sigmoid(x) - 1:
///   dL/dp_u = g * (q_i - q_j) + 2 l2 p_u;   dL/dq_i = g * p_u + 2 l2 q_i;   dL/dq_j = -g * p_u + 2 l2 q_j.
/// Pure functions over caller-owned memory.
public enum BPRModel {
    @inline(__always) static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var s: Float = 0
        for k in 0..<n { s += a[k] * b[k] }
        return s
    }

    /// Loss of one triple.
    public static func loss(user p: UnsafePointer<Float>, positive qi: UnsafePointer<Float>, negative qj: UnsafePointer<Float>, dim: Int, l2: Float) -> Float {
        let x = dot(p, qi, dim) - dot(p, qj, dim)
        let reg = dot(p, p, dim) + dot(qi, qi, dim) + dot(qj, qj, dim)
        return softplus(-x) + l2 * reg
    }

    /// -log sigmoid(-z) computed stably: log(1 + e^z).
    @inline(__always) static func softplus(_ z: Float) -> Float {
        z > 0 ? z + log1pf(expf(-z)) : log1pf(expf(z))
    }
    @inline(__always) static func sigmoid(_ x: Float) -> Float { x >= 0 ? 1 / (1 + expf(-x)) : expf(x) / (1 + expf(x)) }

    /// Adds the triple's gradients into gu, gi, gj (each dim floats) and returns its loss.
    @discardableResult
    public static func accumulateGradients(user p: UnsafePointer<Float>, positive qi: UnsafePointer<Float>, negative qj: UnsafePointer<Float>,
                                           dim: Int, l2: Float,
                                           gu: UnsafeMutablePointer<Float>, gi: UnsafeMutablePointer<Float>, gj: UnsafeMutablePointer<Float>) -> Float {
        let x = dot(p, qi, dim) - dot(p, qj, dim)
        let g = sigmoid(x) - 1
        for k in 0..<dim {
            gu[k] += g * (qi[k] - qj[k]) + 2 * l2 * p[k]
            gi[k] += g * p[k] + 2 * l2 * qi[k]
            gj[k] += -g * p[k] + 2 * l2 * qj[k]
        }
        return softplus(-x) + l2 * (dot(p, p, dim) + dot(qi, qi, dim) + dot(qj, qj, dim))
    }
}

import Foundation
