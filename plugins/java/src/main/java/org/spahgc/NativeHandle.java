package org.spahgc;

import com.sun.jna.Pointer;
import java.util.concurrent.locks.ReadWriteLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * A native handle that calls share and {@link #close} frees once: calls hold a read lock, so
 * closing waits for the calls in flight and no call sees a freed pointer.
 */
final class NativeHandle {
    private final String what;
    private final Consumer<Pointer> free;
    private final ReadWriteLock lock = new ReentrantReadWriteLock();
    private Pointer pointer;

    NativeHandle(String what, Pointer pointer, Consumer<Pointer> free) {
        this.what = what;
        this.pointer = pointer;
        this.free = free;
    }

    /**
     * Runs {@code call} with the live pointer.
     *
     * @throws IllegalStateException if the handle is closed
     */
    <T> T use(Function<Pointer, T> call) {
        lock.readLock().lock();
        try {
            if (pointer == null) {
                throw new IllegalStateException(what + " is closed");
            }
            return call.apply(pointer);
        } finally {
            lock.readLock().unlock();
        }
    }

    /** Frees the handle after the calls in flight; later closes do nothing. */
    void close() {
        lock.writeLock().lock();
        try {
            if (pointer != null) {
                free.accept(pointer);
                pointer = null;
            }
        } finally {
            lock.writeLock().unlock();
        }
    }
}
