public import CGradSketchABI
import Foundation
import GradSketch
import GradSketchStore

// Imports (Spec/c-api.md §7.1): one call reads another tool's gradient files through the
// facade's importer and commits them as one version; progress and cancel go through a C callback.

@_cdecl("gs_store_import")
public func gs_store_import(
    _ store: OpaquePointer?, _ format: UnsafePointer<CChar>?, _ path: UnsafePointer<CChar>?, _ set: UnsafePointer<CChar>?,
    _ optionsJSON: UnsafePointer<CChar>?, _ progress: gs_progress_fn?, _ context: UnsafeMutableRawPointer?,
    _ outReport: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ error: ErrorOut
) -> gs_status {
    outReport?.pointee = nil
    return guarded(error) {
        let handle = try object(store, as: StoreHandle.self, "store")
        let formatName = try string(format, "format")
        let path = try string(path, "path")
        let set = try string(set, "set")
        let options = try optionalString(optionsJSON, "options_json").map(ImportOptions.init(json:)) ?? ImportOptions()
        let resolved: ImportFormat
        if formatName == "auto" {
            resolved = try ImportFormat.detect(path: path)
        } else {
            guard let named = ImportFormat(rawValue: formatName) else {
                throw ABIError.invalid("format must be trak, less, bergson, npy, safetensors or auto, found \"\(formatName)\"")
            }
            resolved = named
        }
        let report: ImportReport
        do {
            report = try handle.store.importRows(format: resolved, from: path, into: set, options: options) { step in
                guard let progress else { return true }
                return step.stage.withCString { stage in
                    progress(context, Int64(step.done), Int64(step.total), stage) == 0
                }
            }
        } catch is ImportCancelled {
            throw ABIError.state("cancelled")
        }
        if let outReport {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            outReport.pointee = mallocString(String(decoding: try encoder.encode(report), as: UTF8.self))
        }
    }
}
