package org.spahgc;

/** The kinds of failure of the C ABI ({@code spahgc_status}); codes are never reused. */
public enum Status {
    OK(0),
    /** A pointer argument was NULL. */
    NULL_ARGUMENT(1),
    /** An argument is out of range (an empty region, a resolution ≤ 0, ...). */
    INVALID_ARGUMENT(2),
    /** A string argument is not UTF-8. */
    INVALID_UTF8(3),
    /** A caller's buffer was too small. */
    BUFFER_TOO_SMALL(4),
    /** A handle was already freed or is of another type. */
    INVALID_HANDLE(5),
    /** The model bundle is missing, corrupt, or of another format. */
    BUNDLE(100),
    /** The encoder (or the ONNX Runtime library) failed to load or run. */
    ENCODER(101),
    /** Embedding spots failed (reading patches or the embedding cache). */
    EMBED(102),
    /** The bundle's reference bank failed. */
    BANK(103),
    /** The SpaHGC network failed. */
    MODEL(104),
    /** The slide could not be opened or read. */
    SLIDE(105),
    /** The embedding cache directory could not be opened. */
    CACHE(106),
    /** The request's cancel token was raised. */
    CANCELLED(200),
    /** A bug in spahgc; the message says where. */
    INTERNAL(900),
    /** A code this binding does not know (from a newer library). */
    UNKNOWN(-1);

    private final int code;

    Status(int code) {
        this.code = code;
    }

    /** The C value, or -1 for {@link #UNKNOWN}. */
    public int code() {
        return code;
    }

    /** The status of a C value; {@link #UNKNOWN} for one this binding does not know. */
    public static Status of(int code) {
        for (Status status : values()) {
            if (status.code == code) {
                return status;
            }
        }
        return UNKNOWN;
    }
}
