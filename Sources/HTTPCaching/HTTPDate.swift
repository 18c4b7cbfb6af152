/// HTTP-date (RFC 9110 §5.6.7): parsed from any of the three formats a recipient must accept,
/// generated only as IMF-fixdate. Values are whole seconds since the Unix epoch, which is the
/// resolution the caching rules compare at.
public enum HTTPDate {
    private static let monthNames = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    private static let monthBytes: [(UInt8, UInt8, UInt8)] = monthNames.map { name in
        let bytes = Array(name.utf8)
        return (bytes[0], bytes[1], bytes[2])
    }
    private static let dayNames = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]

    /// Parses IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), obsolete RFC 850
    /// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`), letters
    /// matched case-insensitively, spacing exactly as the grammar gives it. Anything else, `0`
    /// included, is nil: callers decide what an invalid date means.
    public static func parse<S: StringProtocol>(_ text: S) -> Int64? {
        if let fixed = parseIMFFixdate(text.utf8) { return fixed }
        let trimmed = text.trimmingOWS()
        let parts = trimmed.split(separator: " ", omittingEmptySubsequences: false)
        if parts.count == 6, parts[0].hasSuffix(","), parts[5].equalsIgnoringASCIICase("GMT") {
            // IMF-fixdate: day-name "," SP day SP month SP year SP time SP "GMT"
            guard parts[0].count == 4, parts[1].count == 2, let day = digits(parts[1]), let month = month(parts[2]),
                parts[3].count == 4, let year = digits(parts[3])
            else { return nil }
            return assemble(year: year, month: month, day: day, time: parts[4])
        }
        if parts.count == 4, parts[0].hasSuffix(","), parts[3].equalsIgnoringASCIICase("GMT") {
            // RFC 850: day-name-l "," SP dd-mon-yy SP time SP "GMT"
            let dateParts = parts[1].split(separator: "-", omittingEmptySubsequences: false)
            guard parts[0].count > 4, dateParts.count == 3, dateParts[0].count == 2, let day = digits(dateParts[0]),
                let month = month(dateParts[1]), dateParts[2].count == 2, let shortYear = digits(dateParts[2])
            else { return nil }
            // RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is in the past century.
            let year = shortYear < 70 ? 2000 + shortYear : 1900 + shortYear
            return assemble(year: year, month: month, day: day, time: parts[2])
        }
        // asctime: day-name SP month SP ( 2DIGIT / ( SP 1DIGIT )) SP time SP year
        var asctime = parts
        if asctime.count == 6, asctime[2].isEmpty, asctime[3].count == 1 { asctime.remove(at: 2) }
        if asctime.count == 5, asctime[0].count == 3, !asctime[0].hasSuffix(",") {
            guard let month = month(asctime[1]), (1...2).contains(asctime[2].count), let day = digits(asctime[2]),
                asctime[4].count == 4, let year = digits(asctime[4])
            else { return nil }
            // A one-digit day must have been padded with a space, not written bare.
            guard asctime[2].count == 2 || parts.count == 6 else { return nil }
            return assemble(year: year, month: month, day: day, time: asctime[3])
        }
        return nil
    }

    /// The fast path for the format every modern sender uses, byte by byte without
    /// allocating: exactly `Www, DD Mmm YYYY HH:MM:SS GMT` (29 bytes). Nil sends the caller to
    /// the general parser.
    private static func parseIMFFixdate<Bytes: Collection>(_ bytes: Bytes) -> Int64? where Bytes.Element == UInt8 {
        guard bytes.count == 29 else { return nil }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 29) { buffer -> Int64? in
            _ = buffer.initialize(from: bytes)
            func digit(_ index: Int) -> Int? {
                let byte = buffer[index]
                return byte >= 0x30 && byte <= 0x39 ? Int(byte - 0x30) : nil
            }
            func number(_ index: Int, _ count: Int) -> Int? {
                var value = 0
                for offset in 0..<count {
                    guard let d = digit(index + offset) else { return nil }
                    value = value * 10 + d
                }
                return value
            }
            guard buffer[3] == UInt8(ascii: ","), buffer[4] == 0x20, buffer[7] == 0x20, buffer[11] == 0x20,
                buffer[16] == 0x20, buffer[19] == UInt8(ascii: ":"), buffer[22] == UInt8(ascii: ":"),
                buffer[25] == 0x20,
                buffer[26] | 0x20 == UInt8(ascii: "g"), buffer[27] | 0x20 == UInt8(ascii: "m"),
                buffer[28] | 0x20 == UInt8(ascii: "t"),
                let day = number(5, 2), let year = number(12, 4), let hour = number(17, 2), let minute = number(20, 2),
                let second = number(23, 2), (1...31).contains(day), hour <= 23, minute <= 59, second <= 60, year >= 1000
            else { return nil }
            let m0 = buffer[8] | 0x20
            let m1 = buffer[9] | 0x20
            let m2 = buffer[10] | 0x20
            guard let month = monthBytes.firstIndex(where: { $0.0 == m0 && $0.1 == m1 && $0.2 == m2 }) else {
                return nil
            }
            let days = daysFromCivil(year: year, month: month + 1, day: day)
            return days * 86_400 + Int64(hour * 3600 + minute * 60 + second)
        }
    }

    private static func digits<S: StringProtocol>(_ text: S) -> Int? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(text)
    }

    /// Formats seconds since the epoch as IMF-fixdate.
    public static func format(_ seconds: Int64) -> String {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let (year, month, day) = civil(fromDays: days)
        let weekday = dayNames[Int(((days % 7) + 7) % 7)]
        let monthName = monthNames[month - 1]
        let capitalMonth = monthName.prefix(1).uppercased() + monthName.dropFirst()
        return "\(weekday), \(pad(day)) \(capitalMonth) \(year) "
            + "\(pad(Int(secondOfDay / 3600))):\(pad(Int(secondOfDay % 3600 / 60))):\(pad(Int(secondOfDay % 60))) GMT"
    }

    private static func pad(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }

    private static func month<S: StringProtocol>(_ name: S) -> Int? {
        guard name.count == 3 else { return nil }
        let lower = name.asciiLowercased()
        return monthNames.firstIndex(of: lower).map { $0 + 1 }
    }

    private static func assemble<S: StringProtocol>(year: Int, month: Int, day: Int, time: S) -> Int64? {
        let clock = time.split(separator: ":", omittingEmptySubsequences: false)
        guard clock.count == 3, clock.allSatisfy({ $0.count == 2 }),
            let hour = digits(clock[0]), let minute = digits(clock[1]), let second = digits(clock[2]),
            (0...23).contains(hour), (0...59).contains(minute), (0...60).contains(second),
            (1...31).contains(day), year >= 1000, year <= 9999
        else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        return days * 86_400 + Int64(hour * 3600 + minute * 60 + second)
    }

    /// Howard Hinnant's days_from_civil: proleptic Gregorian date to days since 1970-01-01.
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month), Int(day))
    }
}
