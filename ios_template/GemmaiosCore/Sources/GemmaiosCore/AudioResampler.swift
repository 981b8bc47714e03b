import Foundation

// Resampling to the model's 16 kHz (issue 28): a polyphase windowed-sinc filter, the design of
// scipy's `resample_poly` with its defaults — rates reduced by their gcd to up/down (48 kHz →
// 1/3, 44.1 kHz → 160/441), a low-pass FIR of 2 * 10 * max(up, down) + 1 taps at cutoff
// 1/max(up, down) of Nyquist, Kaiser window (beta 5), normalised to unit DC gain and scaled by
// up; zeros outside the clip; output sample m sits at input time m * down / up; ceil(n * up / down)
// samples out. Float64 inside, Float32 out. tests/test_swift_audio.py compares it with scipy.

public struct AudioResampler: Sendable {
    public let inputRate: Int
    public let outputRate: Int
    public let up: Int
    public let down: Int
    public let halfLength: Int
    /// The FIR (times `up`), 2 * halfLength + 1 taps, centred on tap halfLength.
    public let filter: [Double]

    public static let kaiserBeta = 5.0
    public static let zeroCrossings = 10  // half the filter spans this many input periods of the slower rate

    public init(from inputRate: Int, to outputRate: Int = Contract.audioSampleRate) throws {
        guard inputRate > 0 else { throw AudioInputError.badSampleRate(inputRate) }
        guard outputRate > 0 else { throw AudioInputError.badSampleRate(outputRate) }
        self.inputRate = inputRate
        self.outputRate = outputRate
        let g = AudioResampler.gcd(inputRate, outputRate)
        up = outputRate / g
        down = inputRate / g
        let maxRate = max(up, down)
        halfLength = AudioResampler.zeroCrossings * maxRate
        let gain = Double(outputRate / g)
        filter = AudioResampler.lowPass(taps: 2 * halfLength + 1, cutoff: 1.0 / Double(maxRate),
                                        beta: AudioResampler.kaiserBeta).map { $0 * gain }
    }

    /// Samples out for `count` in: ceil(count * up / down).
    public func outputCount(_ count: Int) -> Int { (count * up + down - 1) / down }

    public func resample(_ x: [Float]) -> [Float] {
        if up == 1 && down == 1 { return x }
        let n = x.count, taps = 2 * halfLength
        var out = [Float](repeating: 0, count: outputCount(n))
        x.withUnsafeBufferPointer { xs in
            filter.withUnsafeBufferPointer { h in
                for m in 0..<out.count {
                    // y[m] = sum_k x[k] * h[t - k*up], t = m*down + halfLength, 0 <= t - k*up <= taps
                    let t = m * down + halfLength
                    let first = max(0, t - taps <= 0 ? 0 : (t - taps + up - 1) / up)
                    let last = min(n - 1, t / up)
                    var sum = 0.0
                    if first <= last {
                        for k in first...last { sum += Double(xs[k]) * h[t - k * up] }
                    }
                    out[m] = Float(sum)
                }
            }
        }
        return out
    }

    // ---- the filter design (scipy.signal.firwin(taps, cutoff, window=("kaiser", beta))) -----------

    static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    /// A windowed-sinc low-pass, `cutoff` relative to Nyquist, unit gain at DC.
    static func lowPass(taps: Int, cutoff: Double, beta: Double) -> [Double] {
        let alpha = Double(taps - 1) / 2
        var h = (0..<taps).map { i -> Double in
            let m = Double(i) - alpha
            return cutoff * sinc(cutoff * m) * kaiser(i, taps: taps, beta: beta)
        }
        let sum = h.reduce(0, +)
        for i in h.indices { h[i] /= sum }
        return h
    }

    static func sinc(_ x: Double) -> Double {
        if x == 0 { return 1 }
        let y = Double.pi * x
        return sin(y) / y
    }

    /// The symmetric Kaiser window's tap i of `taps`.
    static func kaiser(_ i: Int, taps: Int, beta: Double) -> Double {
        if taps == 1 { return 1 }
        let alpha = Double(taps - 1) / 2
        let r = (Double(i) - alpha) / alpha
        return besselI0(beta * (max(0, 1 - r * r)).squareRoot()) / besselI0(beta)
    }

    /// The modified Bessel function I0 by its power series (converges to Float64 precision for
    /// the small arguments a Kaiser window uses).
    static func besselI0(_ x: Double) -> Double {
        var sum = 1.0, term = 1.0, k = 1.0
        let q = x * x / 4
        while term > sum * 1e-17 {
            term *= q / (k * k)
            sum += term
            k += 1
        }
        return sum
    }
}
