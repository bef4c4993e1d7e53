package org.spahgc;

/** A failed spahgc call: its {@link Status} and the library's message. */
public final class SpahgcException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int code;

    SpahgcException(int code, String message) {
        super(message);
        this.code = code;
    }

    /** The kind of failure. */
    public Status status() {
        return Status.of(code);
    }

    /** The raw {@code spahgc_status} value (useful when {@link #status()} is UNKNOWN). */
    public int code() {
        return code;
    }
}
