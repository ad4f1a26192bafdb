import Foundation
import Vocabulary
import COptimizerKernels

/// Applies one table's optimizer to rows laid out as `[weights (dim)][state slot 0 (dim)][state slot 1 (dim)]`.
/// Pure arithmetic on caller-owned memory; thread-safe for distinct rows.
///
/// - SGD: w -= lr*g
/// - Adagrad: a += g^2; w -= lr*g / (sqrt(a) + eps)                       (slot 0 = a, starts at initial_accumulator)
/// - Adam: t += 1; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
///         w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)        (slot 0 = m, slot 1 = v)
/// - FTRL-proximal (McMahan et al. 2013, with a non-zero starting weight as in TensorFlow):
///         n' = n + g^2; sigma = (sqrt(n') - sqrt(n)) / lr; z += g - sigma*w; n = n';
///         w = |z| <= l1 ? 0 : -(z - sign(z)*l1) / ((beta + sqrt(n)) / lr + l2)   (slot 0 = z, slot 1 = n)
public struct SparseOptimizer: Sendable {
    public let config: OptimizerConfig
    public let dim: Int

    public init(config: OptimizerConfig, dim: Int) { self.config = config; self.dim = dim }

    /// Sets the state slots of a fresh row (weights already initialised).
    public func initializeState(_ row: UnsafeMutablePointer<Float>) {
        switch config.kind {
        case .sgd: break
        case .adagrad: (row + dim).update(repeating: config.initialAccumulator, count: dim)
        case .adam: (row + dim).update(repeating: 0, count: 2 * dim)
        case .ftrl:
            (row + dim).update(repeating: 0, count: dim)
            (row + 2 * dim).update(repeating: config.initialAccumulator, count: dim)
        }
    }

    /// Applies gradient `g` (dim floats) to `row`; `step` is the row's update count (Adam uses it).
    /// The arithmetic is the C kernels' (`optimizer_kernels.h`): the same per-column operations as the
    /// formulas above, in the same order, vectorised (as Swift loops, Adagrad, Adam and FTRL compiled to
    /// one scalar sqrt and division per column).
    @inline(__always)
    public func apply(_ row: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>, step: inout UInt32) {
        let lr = config.learningRate
        step &+= 1
        switch config.kind {
        case .sgd:
            embedps_sgd(row, g, dim, lr)
        case .adagrad:
            embedps_adagrad(row, row + dim, g, dim, lr, config.epsilon)
        case .adam:
            let b1 = config.beta1, b2 = config.beta2
            let t = Double(step)
            let c1 = Float(1 - pow(Double(b1), t)), c2 = Float(1 - pow(Double(b2), t))
            embedps_adam(row, row + dim, row + 2 * dim, g, dim, lr, b1, b2, config.epsilon, c1, c2)
        case .ftrl:
            embedps_ftrl(row, row + dim, row + 2 * dim, g, dim, lr, config.l1, config.l2, config.beta)
        }
    }
}
