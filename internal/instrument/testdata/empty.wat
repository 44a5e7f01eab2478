;; No sections at all: Yields must create the type, import and global
;; sections. Rebuild with
;;   wat2wasm empty.wat -o empty.wasm
(module)
