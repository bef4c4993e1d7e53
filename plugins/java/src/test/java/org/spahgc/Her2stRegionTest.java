package org.spahgc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.awt.Graphics2D;
import java.awt.Rectangle;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import javax.imageio.IIOImage;
import javax.imageio.ImageIO;
import javax.imageio.ImageReadParam;
import javax.imageio.ImageReader;
import javax.imageio.ImageWriteParam;
import javax.imageio.ImageWriter;
import javax.imageio.stream.ImageInputStream;
import javax.imageio.stream.ImageOutputStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A region of her2st section C3, predicted by the CLI and by the binding. */
class Her2stRegionTest {
    /** The CSV's values have 4 decimals; the binding must agree to within this. */
    private static final double TOLERANCE = 1e-4;
    /** The CSV's centres have 1 decimal. */
    private static final double CENTRE_TOLERANCE = 0.05 + 1e-9;

    private static SpahgcEngine engine;
    private static Prediction region;

    @BeforeAll
    static void predict() {
        engine = SpahgcEngine.open(TestEnvironment.BUNDLE, TestEnvironment.options());
        region = engine.predictRegion(TestEnvironment.SLIDE, TestEnvironment.REGION, TestEnvironment.HER2ST_MPP, false);
    }

    @AfterAll
    static void close() {
        engine.close();
    }

    @Test
    void equalsTheCliPrediction() throws IOException {
        List<String> lines = Files.readAllLines(TestEnvironment.REFERENCE);
        List<String> header = Arrays.asList(lines.get(0).split(","));
        assertEquals(List.of("spot", "x", "y", "in_tissue"), header.subList(0, 4));
        assertEquals(region.genes(), header.subList(4, header.size()));
        assertEquals(lines.size() - 1, region.spotCount());
        double maxDiff = 0;
        for (int spot = 0; spot < region.spotCount(); spot++) {
            String[] row = lines.get(spot + 1).split(",");
            assertEquals(row[0], region.spotIds().get(spot));
            assertEquals(Double.parseDouble(row[1]), region.centreX(spot), CENTRE_TOLERANCE, row[0]);
            assertEquals(Double.parseDouble(row[2]), region.centreY(spot), CENTRE_TOLERANCE, row[0]);
            assertEquals(row[3].equals("1"), region.inTissue(spot), row[0]);
            for (int gene = 0; gene < region.genes().size(); gene++) {
                maxDiff = Math.max(maxDiff, Math.abs(Double.parseDouble(row[gene + 4]) - region.value(spot, gene)));
            }
        }
        System.out.printf("her2st C3 %s: %d spots x %d genes, max |Java - CLI| = %.2e%n", TestEnvironment.REGION,
                region.spotCount(), region.genes().size(), maxDiff);
        assertTrue(maxDiff <= TOLERANCE, "max |Java - CLI| = " + maxDiff);
    }

    /**
     * Decoders differ: ImageIO's JPEG pixels are not the library's (values differ by ~5e-3). So
     * the pixels ImageIO decodes for the region's context are predicted twice: from memory, and
     * from a lossless PNG slide that holds them at their place (black elsewhere).
     */
    @Test
    void pixelsOfThePixelContextPredictAsTheSlideFile(@TempDir Path dir) throws IOException {
        Region context = engine.pixelContext(TestEnvironment.REGION, TestEnvironment.HER2ST_MPP);
        Rectangle bounds = enclosing(context);
        BufferedImage pixels = read(bounds);
        Path slide = dir.resolve("context.png");
        writePng(placed(pixels, bounds), slide);
        Prediction fromFile = engine.predictRegion(slide, TestEnvironment.REGION, TestEnvironment.HER2ST_MPP, false);
        Prediction fromPixels = engine.predictPixels(pixels, TestEnvironment.HER2ST_MPP, bounds.x, bounds.y,
                TestEnvironment.REGION, false);
        assertEquals(region.spotIds(), fromPixels.spotIds());
        assertEquals(fromFile.spotIds(), fromPixels.spotIds());
        assertEquals(fromFile.genes(), fromPixels.genes());
        double maxDiff = 0;
        for (int spot = 0; spot < fromFile.spotCount(); spot++) {
            assertEquals(fromFile.centreX(spot), fromPixels.centreX(spot), 1e-9);
            assertEquals(fromFile.centreY(spot), fromPixels.centreY(spot), 1e-9);
            assertEquals(fromFile.inTissue(spot), fromPixels.inTissue(spot));
            for (int gene = 0; gene < fromFile.genes().size(); gene++) {
                maxDiff = Math.max(maxDiff, Math.abs(fromFile.value(spot, gene) - fromPixels.value(spot, gene)));
            }
        }
        System.out.printf("predictPixels of context %s: max |pixels - file| = %.2e%n", context, maxDiff);
        assertTrue(maxDiff <= TOLERANCE, "max |pixels - file| = " + maxDiff);
    }

    @Test
    void detectionsHaveOneEntryPerSpotAndOneMeasurementPerGene() {
        List<Detection> detections = Detections.fromPrediction(region);
        assertEquals(region.spotCount(), detections.size());
        int erbb2 = region.genes().indexOf("ERBB2");
        for (int spot = 0; spot < region.spotCount(); spot++) {
            Detection detection = detections.get(spot);
            assertEquals(region.spotIds().get(spot), detection.id());
            assertEquals(region.genes(), List.copyOf(detection.measurements().keySet()));
            assertEquals(region.value(spot, erbb2), detection.measurements().get("ERBB2"), 0);
            Region bounds = detection.bounds();
            assertEquals(region.spotDiameterPx(), bounds.width(), 0);
            assertEquals(region.centreX(spot), bounds.x() + bounds.width() / 2, 1e-9);
            assertEquals(region.centreY(spot), bounds.y() + bounds.height() / 2, 1e-9);
        }
    }

    /** The whole pixels covering {@code region}. */
    private static Rectangle enclosing(Region region) {
        int x = (int) Math.floor(region.x());
        int y = (int) Math.floor(region.y());
        return new Rectangle(x, y, (int) Math.ceil(region.x() + region.width()) - x,
                (int) Math.ceil(region.y() + region.height()) - y);
    }

    /** A black image from the origin to the far corner of {@code bounds}, with {@code pixels} there. */
    private static BufferedImage placed(BufferedImage pixels, Rectangle bounds) {
        BufferedImage image = new BufferedImage(bounds.x + bounds.width, bounds.y + bounds.height,
                BufferedImage.TYPE_3BYTE_BGR);
        Graphics2D graphics = image.createGraphics();
        graphics.drawImage(pixels, bounds.x, bounds.y, null);
        graphics.dispose();
        return image;
    }

    /** Writes {@code image} as a PNG without compression (fast). */
    private static void writePng(BufferedImage image, Path file) throws IOException {
        ImageWriter writer = ImageIO.getImageWritersByFormatName("png").next();
        try (ImageOutputStream output = ImageIO.createImageOutputStream(file.toFile())) {
            writer.setOutput(output);
            ImageWriteParam param = writer.getDefaultWriteParam();
            param.setCompressionMode(ImageWriteParam.MODE_EXPLICIT);
            param.setCompressionQuality(1);
            writer.write(null, new IIOImage(image, null, null), param);
        } finally {
            writer.dispose();
        }
    }

    /** The pixels {@code rectangle} of the slide, decoded by ImageIO. */
    private static BufferedImage read(Rectangle rectangle) throws IOException {
        try (ImageInputStream input = ImageIO.createImageInputStream(TestEnvironment.SLIDE.toFile())) {
            ImageReader reader = ImageIO.getImageReaders(input).next();
            try {
                reader.setInput(input);
                ImageReadParam param = reader.getDefaultReadParam();
                param.setSourceRegion(rectangle);
                return reader.read(0, param);
            } finally {
                reader.dispose();
            }
        }
    }
}
