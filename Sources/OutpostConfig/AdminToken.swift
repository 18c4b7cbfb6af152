import Foundation

/// The admin API's bearer token: `OUTPOST_ADMIN_TOKEN` from the environment, else the content
/// of `admin.token_file`, else none (then the admin listener must be on loopback).
public enum AdminToken {
    public static let environmentVariable = "OUTPOST_ADMIN_TOKEN"

    /// Fills `configuration.admin.token`. Throws when the token file cannot be read or holds no
    /// token, or when a non-loopback admin listener would be left without one.
    public static func resolve(
        _ configuration: inout OutpostConfiguration, environment: [String: String]
    ) throws {
        if let fromEnvironment = environment[environmentVariable], !fromEnvironment.isEmpty {
            configuration.admin.token = fromEnvironment
        } else if let path = configuration.admin.tokenFile {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ConfigurationError("admin.token_file: cannot read \(path): \(error.localizedDescription)")
            }
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty, !token.contains(where: \.isWhitespace) else {
                throw ConfigurationError("admin.token_file: \(path) must hold one token (no spaces)")
            }
            configuration.admin.token = token
        }
        try checkExposure(configuration.admin)
    }

    /// An admin listener reachable from other machines must demand a token.
    public static func checkExposure(_ admin: OutpostConfiguration.Admin) throws {
        guard admin.token == nil, !isLoopback(admin.listen.host) else { return }
        throw ConfigurationError(
            "admin.listen \(admin.listen) is not a loopback address and no admin token is configured: "
                + "set \(environmentVariable) or admin.token_file, or listen on 127.0.0.1")
    }

    /// `localhost`, `::1` or an IPv4 address in 127.0.0.0/8 (written as one: a host name that
    /// merely starts with "127." is not loopback).
    static func isLoopback(_ host: String) -> Bool {
        let bare = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if bare == "localhost" || bare == "::1" { return true }
        let octets = bare.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127"
            && octets.allSatisfy { $0.count <= 3 && Int($0).map { (0...255).contains($0) } == true }
    }

    /// RFC 6750 §2.1: `Authorization: Bearer <token>`, compared in time independent of where
    /// the first difference is.
    public static func authorizes(_ authorization: String?, token: String) -> Bool {
        guard let authorization else { return false }
        let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return false }
        let given = Array(parts[1].trimmingCharacters(in: .whitespaces).utf8)
        let expected = Array(token.utf8)
        var difference = UInt8(given.count == expected.count ? 0 : 1)
        for index in 0..<expected.count {
            difference |= expected[index] ^ (index < given.count ? given[index] : 0)
        }
        return difference == 0
    }
}
