import Foundation

/// Runs a system tool with `input` on stdin and returns its stdout: decoding with `gzip -dc`
/// and `brotli -dc` checks our coded bytes independently of our own coders.
public func systemTool(_ path: String, _ arguments: [String], input: [UInt8]) throws -> [UInt8] {
    let result = try ChildProcess.run(path, arguments, input: input)
    guard result.status == 0 else {
        throw ChildProcess.Failure(
            "\(path) \(arguments.joined(separator: " ")) exited \(result.status): "
                + String(decoding: result.stderr, as: UTF8.self))
    }
    return result.stdout
}

/// Decodes `bytes` of `coding` (`br` or `gzip`) with the system's tool.
public func systemDecode(_ coding: String, _ bytes: [UInt8]) throws -> [UInt8] {
    try systemTool(coding == "br" ? "/usr/bin/brotli" : "/bin/gzip", ["-dc"], input: bytes)
}
