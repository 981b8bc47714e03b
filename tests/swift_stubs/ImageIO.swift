// Stand-in for Apple's ImageIO: CoreAIShared imports it and calls nothing from it, so it declares nothing.
import Foundation
