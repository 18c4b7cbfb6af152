/// delta-seconds (RFC 9111 §1.2.2): a non-negative integer of digits only.
public enum DeltaSeconds {
    /// The value a cache uses for a delta-seconds too large to represent (RFC 9111 §1.2.2).
    public static let maximum: Int64 = 2_147_483_648

    /// Parses digits only; nil for empty, signed, fractional or non-numeric input. A value
    /// beyond 2^31 saturates at ``maximum`` rather than overflowing.
    public static func parse<S: StringProtocol>(_ text: S) -> Int64? {
        guard !text.isEmpty else { return nil }
        var value: Int64 = 0
        for byte in text.utf8 {
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            if value < maximum {
                value = value * 10 + Int64(byte - 0x30)
            }
        }
        return min(value, maximum)
    }
}
