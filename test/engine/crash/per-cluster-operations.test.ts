/** Guest writes, zero writes and discards: a power cut anywhere leaves each guest cluster old or new, and the image valid. */
import { crashSuite } from './operation-suite.ts';

crashSuite('per-cluster', 'a power cut during a guest write, zero write or discard leaves a valid image, each cluster before or after');
