import Foundation
import NIOSSL

/// A private CA and a server certificate it signed, for `localhost` and `127.0.0.1`, valid
/// from 2020 to 2120 (made once with Python's `cryptography`; test material, not a secret).
enum TestCertificates {
    static let caPEM = """
        -----BEGIN CERTIFICATE-----
        MIIBejCCASCgAwIBAgIUMuhikIDRX1Iuyj/yH2b2IsLCS/4wCgYIKoZIzj0EAwIw
        GjEYMBYGA1UEAwwPT3V0cG9zdCB0ZXN0IENBMCAXDTIwMDEwMTAwMDAwMFoYDzIx
        MjAwMTAxMDAwMDAwWjAaMRgwFgYDVQQDDA9PdXRwb3N0IHRlc3QgQ0EwWTATBgcq
        hkjOPQIBBggqhkjOPQMBBwNCAAQNZq0P+P2UFhaa+7P08RLsGor32g4CyP7jv1vk
        D8tyHsW2SA1KdcyqaDwS0xHjnfgoG5wVPa41pZjYR8DLDNtpo0IwQDAPBgNVHRMB
        Af8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAdBgNVHQ4EFgQU6uexcQfT6lryQQ0i
        UVTu6UPWOl0wCgYIKoZIzj0EAwIDSAAwRQIgUdzczWSDQZ7Xtg008m0hQ8zfcisx
        67gEKuhZTzp2ujICIQCmFTo054V325pKXLidqXyN/9rSD/hKRbuiDgc6q86HUA==
        -----END CERTIFICATE-----
        """

    static let serverPEM = """
        -----BEGIN CERTIFICATE-----
        MIIBpTCCAUqgAwIBAgIURw5Pp4VK/VwdneDqlwmXP6cuLxAwCgYIKoZIzj0EAwIw
        GjEYMBYGA1UEAwwPT3V0cG9zdCB0ZXN0IENBMCAXDTIwMDEwMTAwMDAwMFoYDzIx
        MjAwMTAxMDAwMDAwWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIB
        BggqhkjOPQMBBwNCAAT5uhZEiY+zsdtQq8kLr0r2Mu7EHDArNmLoKZJLj/B9vBvz
        aVM1U467o/UYVvppTzDI98PeUZT+Vz8nr8Vmqr6ro3IwcDAaBgNVHREEEzARggls
        b2NhbGhvc3SHBH8AAAEwDAYDVR0TAQH/BAIwADAOBgNVHQ8BAf8EBAMCB4AwEwYD
        VR0lBAwwCgYIKwYBBQUHAwEwHwYDVR0jBBgwFoAU6uexcQfT6lryQQ0iUVTu6UPW
        Ol0wCgYIKoZIzj0EAwIDSQAwRgIhAP1gPRhRCJE7FlgJLs56CazRZPOQ9WpqOsRo
        KgujUQdrAiEAwvkziL32NUpjqpG3dxXrqYKRxI2XP99WRutKPL3LEVI=
        -----END CERTIFICATE-----
        """

    static let serverKeyPEM = """
        -----BEGIN PRIVATE KEY-----
        MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFqdaNxQZhxVAQZbe
        XYuOBpd0caDyQgZmnGebfhrOaqqhRANCAAT5uhZEiY+zsdtQq8kLr0r2Mu7EHDAr
        NmLoKZJLj/B9vBvzaVM1U467o/UYVvppTzDI98PeUZT+Vz8nr8Vmqr6r
        -----END PRIVATE KEY-----
        """

    /// The server side of TLS for a test origin.
    static func serverContext() throws -> NIOSSLContext {
        let configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(serverPEM.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(serverKeyPEM.utf8), format: .pem)))
        return try NIOSSLContext(configuration: configuration)
    }

    /// The CA written to a file, as `upstream.tls_ca_file` wants it.
    static func caFile() throws -> String {
        let path = NSTemporaryDirectory() + "outpost-test-ca-" + UUID().uuidString + ".pem"
        try caPEM.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
