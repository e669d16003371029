import Foundation

/// Paths inside the repository, for tests that run the Python reference or read golden files.
public enum Repository {
    /// The package root, found from this source file's location.
    public static var root: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// `Spec/reference/gradsketch_ref.py`.
    public static var referenceScript: String { root + "/Spec/reference/gradsketch_ref.py" }

    public static var goldenDirectory: String { root + "/Spec/golden" }
}
