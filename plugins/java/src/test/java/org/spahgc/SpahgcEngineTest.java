package org.spahgc;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

class SpahgcEngineTest {
    private static SpahgcEngine engine;

    @BeforeAll
    static void open() {
        engine = SpahgcEngine.open(TestEnvironment.BUNDLE, TestEnvironment.options());
    }

    @AfterAll
    static void close() {
        engine.close();
    }

    @Test
    void loadsTheLibraryOfThisAbi() {
        assertFalse(Spahgc.version().isBlank());
    }

    @Test
    void hasTheBundlesGenes() {
        List<String> genes = engine.genes();
        assertEquals(250, genes.size());
        assertTrue(genes.contains("ERBB2"));
        assertThrows(UnsupportedOperationException.class, () -> genes.add("X"));
    }

    @Test
    void missingBundleFailsWithBundleStatus() {
        assertFails(Status.BUNDLE, "/nonexistent-bundle",
                () -> SpahgcEngine.open(Path.of("/nonexistent-bundle"), TestEnvironment.options()));
    }

    @Test
    void missingSlideFailsWithSlideStatus() {
        assertFails(Status.SLIDE, "/nonexistent.svs",
                () -> engine.predictRegion(Path.of("/nonexistent.svs"), TestEnvironment.REGION, 0.5, false));
    }

    @Test
    void negativeResolutionIsInvalid() {
        assertFails(Status.INVALID_ARGUMENT, "-1", () -> engine.predictRegion(TestEnvironment.SLIDE,
                TestEnvironment.REGION, -1, false));
    }

    @Test
    void emptyRegionIsInvalid() {
        assertFails(Status.INVALID_ARGUMENT, "region", () -> engine.predictRegion(TestEnvironment.SLIDE,
                new Region(100, 100, 0, 50), TestEnvironment.HER2ST_MPP, false));
    }

    @Test
    void closingTwiceIsSafeAndUseAfterCloseThrows() {
        SpahgcEngine closed = SpahgcEngine.open(TestEnvironment.BUNDLE, TestEnvironment.options());
        closed.close();
        assertDoesNotThrow(closed::close);
        assertThrows(IllegalStateException.class, closed::genes);
        assertThrows(IllegalStateException.class, () -> closed.predictRegion(TestEnvironment.SLIDE,
                TestEnvironment.REGION, TestEnvironment.HER2ST_MPP, false));
    }

    @Test
    void cancellingFromAnotherThreadEndsThePrediction() throws InterruptedException {
        CountDownLatch started = new CountDownLatch(1);
        CountDownLatch cancelled = new CountDownLatch(1);
        ExecutorService executor = Executors.newSingleThreadExecutor();
        try (CancelToken token = new CancelToken()) {
            // A region no other test predicts, of several encoder batches: the first batch
            // reports progress, then waits until the token is raised.
            Future<Prediction> prediction = executor.submit(() -> engine.predictRegion(TestEnvironment.SLIDE,
                    new Region(5000, 5000, 3000, 3000), TestEnvironment.HER2ST_MPP, false, token, (done, total) -> {
                        started.countDown();
                        await(cancelled);
                    }));
            assertTrue(started.await(60, TimeUnit.SECONDS), "no progress");
            token.cancel();
            cancelled.countDown();
            ExecutionException failure = assertThrows(ExecutionException.class, prediction::get);
            SpahgcException error = assertInstanceOf(SpahgcException.class, failure.getCause());
            assertEquals(Status.CANCELLED, error.status());
        } finally {
            executor.shutdownNow();
        }
    }

    private static void await(CountDownLatch latch) {
        try {
            latch.await(60, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void assertFails(Status status, String mentioned, Executable call) {
        SpahgcException error = assertThrows(SpahgcException.class, call);
        assertEquals(status, error.status(), error.getMessage());
        assertEquals(status.code(), error.code());
        assertTrue(error.getMessage().contains(mentioned), () -> "the message does not mention " + mentioned
                + ": " + error.getMessage());
    }
}
