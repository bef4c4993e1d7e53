package org.spahgc;

import com.sun.jna.Pointer;
import java.util.function.Function;

/**
 * A flag that ends the predictions it is passed to with {@link Status#CANCELLED}: raise it
 * with {@link #cancel()} from any thread. Closing it waits for the predictions using it.
 */
public final class CancelToken implements AutoCloseable {
    private final NativeHandle handle;

    /** A new token, not raised. */
    public CancelToken() {
        LibSpahgc lib = Spahgc.lib();
        Pointer token = lib.spahgc_cancel_token_new();
        if (token == null) {
            throw new SpahgcException(Status.INTERNAL.code(), lib.spahgc_last_error());
        }
        handle = new NativeHandle("cancel token", token, lib::spahgc_cancel_token_free);
    }

    /**
     * Raises the token: predictions using it end soon, and later ones at once.
     *
     * @throws IllegalStateException if the token is closed
     */
    public void cancel() {
        handle.use(token -> {
            Spahgc.check(Spahgc.lib().spahgc_cancel_token_cancel(token));
            return null;
        });
    }

    /** Runs {@code call} with the native token (for a request). */
    <T> T use(Function<Pointer, T> call) {
        return handle.use(call);
    }

    /** Frees the token; closing it again does nothing. */
    @Override
    public void close() {
        handle.close();
    }
}
