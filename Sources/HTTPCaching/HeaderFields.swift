/// An ordered list of HTTP header fields with case-insensitive lookup.
///
/// The caching rules need three views of a field: its raw lines (to store and forward them as
/// received), its combined value (RFC 9110 §5.3: several lines of a list field are one
/// comma-separated list) and its list members. Names are compared case-insensitively (RFC 9110
/// §5.1) but kept as sent.
public struct HeaderFields: Sendable, Equatable, Sequence {
    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public private(set) var fields: [Field]

    public init() { self.fields = [] }

    public init(_ pairs: [(String, String)]) {
        self.fields = pairs.map { Field(name: $0.0, value: $0.1) }
    }

    public init(fields: [Field]) { self.fields = fields }

    public func makeIterator() -> IndexingIterator<[Field]> { fields.makeIterator() }

    public var count: Int { fields.count }

    /// Every line of the named field, in order.
    public func values(_ name: String) -> [String] {
        fields.compactMap { $0.name.equalsIgnoringASCIICase(name) ? $0.value : nil }
    }

    /// The first line of the named field.
    public subscript(_ name: String) -> String? {
        fields.first(where: { $0.name.equalsIgnoringASCIICase(name) })?.value
    }

    public func contains(_ name: String) -> Bool {
        fields.contains(where: { $0.name.equalsIgnoringASCIICase(name) })
    }

    /// All lines combined into one comma-separated value (RFC 9110 §5.3), or nil when absent.
    public func combined(_ name: String) -> String? {
        guard let first = fields.firstIndex(where: { $0.name.equalsIgnoringASCIICase(name) }) else { return nil }
        let rest = fields[(first + 1)...]
        guard rest.contains(where: { $0.name.equalsIgnoringASCIICase(name) }) else { return fields[first].value }
        return values(name).joined(separator: ", ")
    }

    /// The members of a list field across all its lines, trimmed, empty members dropped
    /// (RFC 9110 §5.6.1). Commas inside quoted strings do not split.
    public func listMembers(_ name: String) -> [String] {
        values(name).flatMap { HeaderFields.splitList($0) }
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append(Field(name: name, value: value))
    }

    /// Replaces every line of the field with one line (appended where the first one stood).
    public mutating func replace(_ name: String, with value: String) {
        if let index = fields.firstIndex(where: { $0.name.equalsIgnoringASCIICase(name) }) {
            fields[index].value = value
            var seen = false
            fields.removeAll { field in
                guard field.name.equalsIgnoringASCIICase(name) else { return false }
                if !seen {
                    seen = true
                    return false
                }
                return true
            }
        } else {
            add(name, value)
        }
    }

    public mutating func remove(_ name: String) {
        fields.removeAll { $0.name.equalsIgnoringASCIICase(name) }
    }

    public mutating func remove(where predicate: (Field) -> Bool) {
        fields.removeAll(where: predicate)
    }

    /// Splits one field line on commas that are outside quoted strings.
    public static func splitList(_ line: String) -> [String] {
        var members: [String] = []
        var current = Substring()
        var start = line.startIndex
        var inQuotes = false
        var escaped = false
        var index = line.startIndex
        while index < line.endIndex {
            let character = line[index]
            if escaped {
                escaped = false
            } else if inQuotes && character == "\\" {
                escaped = true
            } else if character == "\"" {
                inQuotes.toggle()
            } else if character == "," && !inQuotes {
                current = line[start..<index]
                let trimmed = current.trimmingOWS()
                if !trimmed.isEmpty { members.append(String(trimmed)) }
                start = line.index(after: index)
            }
            index = line.index(after: index)
        }
        let trimmed = line[start...].trimmingOWS()
        if !trimmed.isEmpty { members.append(String(trimmed)) }
        return members
    }
}

extension StringProtocol {
    /// ASCII case-insensitive comparison, which is what HTTP field names and tokens use.
    public func equalsIgnoringASCIICase<Other: StringProtocol>(_ other: Other) -> Bool {
        let lhs = self.utf8
        let rhs = other.utf8
        guard lhs.count == rhs.count else { return false }
        // Header names are compared on every lookup: compare the contiguous bytes when both
        // strings have them (native strings do), byte by byte through the views otherwise.
        if let equal = lhs.withContiguousStorageIfAvailable({ left in
            rhs.withContiguousStorageIfAvailable { right in
                for index in 0..<left.count where left[index] != right[index] {
                    guard Self.sameLetter(left[index], right[index]) else { return false }
                }
                return true
            }
        }), let equal {
            return equal
        }
        for (a, b) in zip(lhs, rhs) where a != b {
            guard Self.sameLetter(a, b) else { return false }
        }
        return true
    }

    /// Two different bytes that are the same ASCII letter in different case.
    private static func sameLetter(_ a: UInt8, _ b: UInt8) -> Bool {
        a | 0x20 == b | 0x20 && (a | 0x20) >= 0x61 && (a | 0x20) <= 0x7A
    }

    /// Lower-cases ASCII letters only.
    public func asciiLowercased() -> String {
        String(decoding: self.utf8.map { ($0 >= 0x41 && $0 <= 0x5A) ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    /// Trims optional whitespace (SP and HTAB, RFC 9110 §5.6.3).
    public func trimmingOWS() -> SubSequence {
        var start = startIndex
        var end = endIndex
        while start < end, self[start] == " " || self[start] == "\t" { start = index(after: start) }
        while end > start {
            let before = index(before: end)
            guard self[before] == " " || self[before] == "\t" else { break }
            end = before
        }
        return self[start..<end]
    }
}
