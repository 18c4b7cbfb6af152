/// Range requests (RFC 9110 §14): parsing `Range: bytes=…` and resolving it against a
/// representation of known length.
///
/// This cache serves a single range as a 206. A request for several ranges is answered with
/// the whole representation (RFC 9110 §14.2 lets a server ignore Range); multipart/byteranges
/// comes with the content-coding work.
public struct ByteRangeSpec: Sendable, Equatable {
    public enum Part: Sendable, Equatable {
        /// `first-last` or `first-` (last nil).
        case span(first: Int64, last: Int64?)
        /// `-suffixLength`: the final bytes.
        case suffix(Int64)
    }

    public var parts: [Part]

    /// Parses a Range field value. Nil when it is not a syntactically valid `bytes` range set
    /// (RFC 9110 §14.2: an invalid Range is ignored) or names another unit.
    public init?(_ value: String) {
        let trimmed = value.drop(while: { $0 == " " })
        guard let equals = trimmed.firstIndex(of: "="),
            trimmed[..<equals].lowercased() == "bytes"
        else { return nil }
        var parts: [Part] = []
        for member in trimmed[trimmed.index(after: equals)...].split(separator: ",", omittingEmptySubsequences: false) {
            let text = member.trimmingCharacters(in: " \t")
            if text.isEmpty { continue }
            let pieces = text.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
            guard pieces.count == 2 else { return nil }
            let first = pieces[0]
            let last = pieces[1]
            if first.isEmpty {
                guard let suffix = ByteRangeSpec.number(last) else { return nil }
                parts.append(.suffix(suffix))
            } else {
                guard let start = ByteRangeSpec.number(first) else { return nil }
                if last.isEmpty {
                    parts.append(.span(first: start, last: nil))
                } else {
                    guard let end = ByteRangeSpec.number(last), end >= start else { return nil }
                    parts.append(.span(first: start, last: end))
                }
            }
        }
        guard !parts.isEmpty else { return nil }
        self.parts = parts
    }

    /// The outcome of applying a range set to a representation of `length` bytes.
    public enum Resolution: Sendable, Equatable {
        /// Serve bytes `lower...upper` (inclusive) as a 206.
        case single(lower: Int64, upper: Int64)
        /// Serve the whole representation as a 200 (several ranges).
        case whole
        /// 416 with `Content-Range: bytes */length`.
        case unsatisfiable
    }

    /// Resolves against a representation of `length` bytes: a last-byte-pos past the end is
    /// clamped; a range starting at or past the end, or a zero suffix, is unsatisfiable
    /// (RFC 9110 §14.1.2).
    public func resolve(length: Int64) -> Resolution {
        let satisfiable = satisfiableRanges(length: length)
        guard !satisfiable.isEmpty else { return .unsatisfiable }
        if satisfiable.count == 1 { return .single(lower: satisfiable[0].lower, upper: satisfiable[0].upper) }
        return .whole
    }

    /// The satisfiable ranges in request order, clamped to the representation.
    func satisfiableRanges(length: Int64) -> [(lower: Int64, upper: Int64)] {
        parts.compactMap { part in
            switch part {
            case .span(let first, let last):
                return first < length ? (first, min(last ?? length - 1, length - 1)) : nil
            case .suffix(let count):
                return count > 0 && length > 0 ? (max(0, length - count), length - 1) : nil
            }
        }
    }

    private static func number<S: StringProtocol>(_ text: S) -> Int64? {
        guard !text.isEmpty, text.count <= 18, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int64(text)
    }
}

extension StringProtocol {
    fileprivate func trimmingCharacters(in set: String) -> Substring {
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, set.contains(last) { slice = slice.dropLast() }
        return slice
    }
}
